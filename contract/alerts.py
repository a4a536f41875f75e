"""The alert record on the `alerts` topic: one JSON object per alert, for any subscriber.

`alert_id` is derived from what the alert is about (type, scope, window), never
from a counter, so a consumer can de-duplicate and a replay raises the same id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson


class AlertType(StrEnum):
    SMS_FAILURES = "sms_failures"  # failed + undelivered messages in a window reached the threshold
    SMS_FAILURE_RATE = "sms_failure_rate"  # failure rate over a minimum volume crossed a percentage
    CALL_FAILURES = "call_failures"
    CALL_FAILURE_RATE = "call_failure_rate"
    LOW_MOS = "low_mos"  # mean AudioInMos below the floor over a minimum number of calls


class ScopeType(StrEnum):
    """What the processors count windows and raise alerts for, per callback."""

    ACCOUNT = "account"  # its AccountSid
    NUMBER = "number"  # our side of the message or call
    CAMPAIGN = "campaign"  # its campaign tag


def scope_key(scope_type: ScopeType, scope_value: str) -> str:
    """`campaign:spring-sale`, `number:+15550001111`, `account:AC...`."""
    return f"{scope_type}:{scope_value}"


def make_alert_id(type_: AlertType, scope: str, window_start: float, window_s: int) -> str:
    digest = hashlib.sha256(f"{type_}|{scope}|{window_start:.3f}|{window_s}".encode()).hexdigest()
    return f"AL{digest[:32]}"


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    type: AlertType
    scope: str  # scope_key(...)
    window_start: float  # epoch seconds, UTC
    window_end: float
    count: int  # events of the alert's kind in the window (failures, or calls for low_mos)
    threshold: float  # the count, percentage or MOS floor that was crossed
    value: float  # the measured figure: count, failure rate in %, or mean MOS
    raised_at: float

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)  # orjson writes a dataclass as asdict() would, 10x faster

    @classmethod
    def from_bytes(cls, raw: bytes) -> Alert:
        data: dict[str, Any] = orjson.loads(raw)
        data["type"] = AlertType(data["type"])
        return cls(**data)
