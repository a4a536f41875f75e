"""Normalized events to ClickHouse rows (JSONEachRow), a pure mapping."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from contract.events import Event
from contract.kinds import SPECS
from contract.statuses import UNKNOWN_RANK
from sinks.clickhouse.schema import RECORD_TABLES, event_columns, record_columns
from sinks.clickhouse.writer import Row, RowMapper

_EVENT_COLUMNS = {kind: tuple(n for n, _ in event_columns(spec)) for kind, spec in SPECS.items()}


def event_row(event: Event) -> dict[str, Any]:
    spec = event.kind.spec
    row = dict(event.values)
    if spec.status_column and row.get(spec.status_column) is None:
        row[spec.status_column] = ""
    row["status_rank"] = spec.ranks.get(event.status or "", UNKNOWN_RANK)
    row["campaign"] = event.campaign
    row["received_at"] = event.received_at
    row["event_time"] = event.event_time
    row["tags"] = event.tags
    row["extra"] = event.extra
    return row


def event_rows(raw: bytes) -> Iterator[Row]:
    """The events topic's mapper: one record, one row in its kind's table."""
    event = Event.from_bytes(raw)
    yield Row(event.kind.spec.table, _EVENT_COLUMNS[event.kind], event_row(event))


def record_rows(table: str) -> RowMapper:
    """The mapper of a topic of contract records (alerts, window figures): one record,
    one row in `table`, whose columns are the record's fields."""
    record, _ = RECORD_TABLES[table]
    columns = tuple(name for name, _ in record_columns(record))
    parse = record.from_bytes  # type: ignore[attr-defined]

    def rows(raw: bytes) -> Iterator[Row]:
        yield Row(table, columns, asdict(parse(raw)))

    return rows
