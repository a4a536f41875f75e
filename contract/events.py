"""The normalized event: one callback after parsing, what processors and sinks use.

`values` maps snake_case column names (see `contract.kinds`) to typed values:
str, int, float, or None for an absent or unreadable parameter; timestamps are epoch
seconds. `parse_errors` keeps the raw text of each unreadable one, by parameter name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from typing_extensions import TypedDict  # pydantic makes the published schema of it (3.11)

from contract import jsonbytes
from contract.errors import BadCallback
from contract.kinds import CallbackKind

EVENT_VERSION = 1
# How every `Event.to_bytes` starts, up to its kind's value (it writes these two keys
# first, compact): the ClickHouse writer routes a record by its kind without parsing it.
KIND_PREFIX = orjson.dumps({"v": EVENT_VERSION, "kind": ""})[: -len(b'"}')]
# The parse errors of nearly every event: one shared empty map, never changed (typed as
# a Mapping), so that the intake makes no object per callback for them.
NO_PARSE_ERRORS: Mapping[str, str] = {}


class EventRecord(TypedDict):
    """The events topic's record, as `Event.to_bytes` writes it: the published schema
    (`contract/published.py`) is made from this, and mypy holds `to_bytes` to it."""

    v: int
    kind: CallbackKind
    sid: str
    status: str | None
    received_at: float
    event_time: float
    campaign: str
    values: dict[str, str | int | float | None]  # snake_case parameter -> typed value
    tags: dict[str, str]  # the callback URL's query string
    extra: dict[str, str]  # parameters with no column of their own
    parse_errors: Mapping[str, str]  # unreadable parameters (None in `values`): raw text
    source: str  # "callback" (the provider posted it) or "reconcile" (read from its REST API)


@dataclass(frozen=True, slots=True)
class Event:
    kind: CallbackKind
    sid: str
    status: str | None
    received_at: float  # epoch seconds, stamped at the edge
    event_time: float  # the provider's Timestamp when it sent one, else received_at
    campaign: str
    values: dict[str, Any]
    tags: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)  # parameters we have no column for
    # unreadable parameters (their typed value is None): name -> raw text
    parse_errors: Mapping[str, str] = field(default_factory=dict)
    source: str = "callback"  # contract.envelope.Source

    def get(self, column: str) -> Any:
        return self.values.get(column)

    def to_bytes(self, values: dict[str, Any] | None = None) -> bytes:
        """Exact-size (`jsonbytes`): an intake batch holds up to thousands of these.
        `values`: in place of the event's own (redacted ones, `contract.privacy`)."""
        record: EventRecord = {
            "v": EVENT_VERSION,
            "kind": self.kind,
            "sid": self.sid,
            "status": self.status,
            "received_at": self.received_at,
            "event_time": self.event_time,
            "campaign": self.campaign,
            "values": self.values if values is None else values,
            "tags": self.tags,
            "extra": self.extra,
            "parse_errors": self.parse_errors,
            "source": self.source,
        }
        return jsonbytes.dumps(record)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Event:
        try:
            d: dict[str, Any] = orjson.loads(raw)
            return cls(
                kind=CallbackKind(d["kind"]),
                sid=d["sid"],
                status=d["status"],
                received_at=float(d["received_at"]),
                event_time=float(d["event_time"]),
                campaign=d["campaign"],
                values=d["values"],
                tags=d.get("tags") or {},
                extra=d.get("extra") or {},
                parse_errors=d.get("parse_errors") or NO_PARSE_ERRORS,
                source=d.get("source") or "callback",
            )
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
            raise BadCallback(f"undecodable event: {exc}") from None
