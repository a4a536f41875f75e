"""Kafka records to ClickHouse rows (JSONEachRow): pure mappings, one per topic."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import orjson

from contract.deadletters import DeadLetter
from contract.events import KIND_PREFIX, Event
from sinks.clickhouse.schema import EVENT_STAGING, STAGING_COLUMNS
from sinks.clickhouse.writer import Row, RowMapper

_KIND_AT = len(KIND_PREFIX)
_STAGING_BY_KIND = {kind.value.encode(): staging.table for kind, staging in EVENT_STAGING.items()}


def json_rows(rows: list[dict[str, Any]]) -> bytes:
    """Rows as JSONEachRow, for the inserts made outside a writer (a forward's record,
    enriched failures)."""
    return b"\n".join(orjson.dumps(r) for r in rows)


def event_row(raw: bytes) -> Row:
    """The events topic's mapper: the record as it is, to its kind's staging table,
    where ClickHouse parses it (see `schema`). Only the kind is read here, from the
    record's first bytes; a record laid out otherwise is parsed and re-serialized."""
    if raw.startswith(KIND_PREFIX):
        table = _STAGING_BY_KIND.get(raw[_KIND_AT : raw.find(b'"', _KIND_AT)])
        if table is not None:
            return table, STAGING_COLUMNS, raw
    event = Event.from_bytes(raw)  # BadCallback if unreadable
    return EVENT_STAGING[event.kind].table, STAGING_COLUMNS, event.to_bytes()


def record_row(table: str, record: type[Any]) -> RowMapper:
    """The mapper of a topic of contract records (alerts, window figures): one record,
    one row in `table`, whose columns are the record's fields. The record is parsed
    (a bad one is refused here) and written back as its own `to_bytes`."""
    columns = tuple(f.name for f in fields(record))
    parse = record.from_bytes

    def row(raw: bytes) -> Row:
        return table, columns, parse(raw).to_bytes()

    return row


def dead_letter_row(prefix: str) -> RowMapper:
    """The mapper of the dead-letter topics: a letter of any version (`prefix`, the
    deployment's topic prefix, which the oldest letters kept in their topic names), one
    row in `dead_letters`."""
    columns = tuple(f.name for f in fields(DeadLetter))

    def row(raw: bytes) -> Row:
        return "dead_letters", columns, DeadLetter.from_bytes(raw, prefix).to_bytes()

    return row
