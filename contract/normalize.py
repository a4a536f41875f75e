"""Raw callback parameters to a typed `Event`: a pure function, used by every stage.

The provider sends everything as strings, empty strings for absent values, RFC 2822
timestamps and MOS as text; the JSON formats (`contract.formats`) add ISO 8601 and
Unix timestamps and numbers that were JSON numbers, which read the same way. A value
that cannot be read as its type costs nothing but itself: it is NULL (None) in its
typed column, like an absent one, and its raw text is kept in the event's
`parse_errors` (parameter name to raw value). Only a callback with no SID (nothing to
keep it under) or no status (nothing to count) raises `BadCallback`, with its
dead-letter reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from contract.deadletters import Reason
from contract.envelope import Envelope
from contract.errors import BadCallback
from contract.events import NO_PARSE_ERRORS, Event
from contract.kinds import SPECS, Param, ParamType

CAMPAIGN_TAG = "campaign"

# What ClickHouse's columns hold (Int64; DateTime64 from 1900 to 2299): a value beyond
# them would make ClickHouse refuse the whole row, so it is unreadable here instead.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_TIME_MIN, _TIME_MAX = -2_208_988_800.0, 10_413_792_000.0

# What reading a value as its type raises when it is not one (parsedate_to_datetime
# raises TypeError or IndexError on some non-dates).
UNREADABLE = (ValueError, TypeError, OverflowError, IndexError)

_KNOWN = {kind: frozenset(p.name for p in spec.params) for kind, spec in SPECS.items()}


def parse_value(param: Param, raw: str | None) -> Any:
    """The typed value; None when absent (missing or blank). Raises one of `UNREADABLE`
    when the value is there but is not one of its type."""
    if raw is None:
        return None
    text = raw.strip()
    if text == "":
        return None
    match param.type:
        case ParamType.TEXT:
            return raw
        case ParamType.INT:
            number = int(float(text)) if "." in text else int(text)
            if not _INT_MIN <= number <= _INT_MAX:
                raise ValueError("out of range")
            return number
        case ParamType.FLOAT:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError("not finite")
            return value
        case ParamType.TIMESTAMP:
            seconds = parse_time(text)
            if not _TIME_MIN <= seconds < _TIME_MAX:
                raise ValueError("out of range")
            return seconds
    raise AssertionError(param.type)


def parse_time(text: str) -> float:
    """Epoch seconds from RFC 2822 (Compatibility), ISO 8601 (REST, Event Streams) or a
    Unix time in seconds (SWML; milliseconds when it is too large to be seconds)."""
    if text[0].isdigit() and "-" not in text and ":" not in text:
        seconds = float(text)
        if not math.isfinite(seconds):
            raise ValueError("not finite")
        return seconds / 1000 if seconds >= 1e11 else seconds
    if text[0].isdigit():
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)  # ISO times without an offset are UTC
        return moment.timestamp()
    moment = parsedate_to_datetime(text)
    if moment.tzinfo is None:
        raise ValueError("no time zone")
    return moment.timestamp()


def normalize(envelope: Envelope) -> Event:
    kind = envelope.kind
    spec = kind.spec
    params = envelope.params
    values: dict[str, Any] = {}
    unreadable: dict[str, str] | None = None  # made only for a callback that needs it
    for param in spec.params:
        raw = params.get(param.name)
        try:
            values[param.column] = parse_value(param, raw)
        except UNREADABLE:
            values[param.column] = None
            if unreadable is None:
                unreadable = {}
            unreadable[param.name] = raw or ""
    sid = values[spec.sid_column] or envelope.sid.strip()
    if not sid:
        raise BadCallback(f"{spec.sid_param} is missing", code=Reason.NO_SID)
    values[spec.sid_column] = sid
    status: str | None = None
    if spec.status_column is not None:
        status = values[spec.status_column]
        if not status:
            raise BadCallback(f"{spec.status_param} is missing", sid=sid, code=Reason.NO_STATUS)
    known = _KNOWN[kind]
    parse_errors: Mapping[str, str] = NO_PARSE_ERRORS if unreadable is None else unreadable
    return Event(
        kind=kind,
        sid=sid,
        status=status,
        received_at=envelope.received_at,
        event_time=values.get("timestamp") or envelope.received_at,
        campaign=envelope.tags.get(CAMPAIGN_TAG, ""),
        values=values,
        tags=envelope.tags,
        extra={k: v for k, v in params.items() if k not in known},
        parse_errors=parse_errors,
        source=envelope.source.value,
    )
