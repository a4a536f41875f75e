"""Raw callback parameters to a typed `Event`: a pure function, used by every stage.

The provider sends everything as strings, empty strings for absent values, RFC 2822
timestamps and MOS as text. A value that cannot be read raises `BadCallback`
with the parameter's name, so the record can go to the dead-letter topic.
"""

from __future__ import annotations

import math
from email.utils import parsedate_to_datetime
from typing import Any

from contract.envelope import Envelope
from contract.errors import BadCallback
from contract.events import Event
from contract.kinds import Param, ParamType

CAMPAIGN_TAG = "campaign"


def parse_value(param: Param, raw: str | None) -> Any:
    if raw is None:
        return None
    text = raw.strip()
    if text == "":
        return None
    try:
        match param.type:
            case ParamType.TEXT:
                return raw
            case ParamType.INT:
                return int(float(text)) if "." in text else int(text)
            case ParamType.FLOAT:
                value = float(text)
                if not math.isfinite(value):
                    raise ValueError("not finite")
                return value
            case ParamType.TIMESTAMP:
                moment = parsedate_to_datetime(text)
                if moment.tzinfo is None:
                    raise ValueError("no time zone")
                return moment.timestamp()
    except (ValueError, TypeError, OverflowError, IndexError) as exc:
        raise BadCallback(f"{param.name}={raw[:64]!r} is not a valid {param.type}: {exc}") from None
    raise AssertionError(param.type)


def normalize(envelope: Envelope) -> Event:
    spec = envelope.kind.spec
    params = envelope.params
    values = {p.column: parse_value(p, params.get(p.name)) for p in spec.params}
    sid = values[spec.sid_column]
    if not sid:
        raise BadCallback(f"{spec.sid_param} is missing")
    known = {p.name for p in spec.params}
    event_time = values.get("timestamp") or envelope.received_at
    return Event(
        kind=envelope.kind,
        sid=sid,
        status=values.get(spec.status_column) if spec.status_column else None,
        received_at=envelope.received_at,
        event_time=event_time,
        campaign=envelope.tags.get(CAMPAIGN_TAG, ""),
        values=values,
        tags=envelope.tags,
        extra={k: v for k, v in params.items() if k not in known},
    )
