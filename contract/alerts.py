"""The alert record on the `alerts` topic: one JSON object per transition, for any subscriber.

An alert has a stable identity, its `fingerprint` (type, scope and the rule's window),
and a lifecycle: `firing` when a rule breaks, `resolved` when it is clear again.
Each record is one notification: the first `firing`, a repeat of a long-firing
alert (`repeat` 1, 2, ...) and the `resolved`. `alert_id` names that notification and
is derived from the data (fingerprint, the window where the episode began, the
transition and the repeat), never from a counter, so a consumer can de-duplicate and
a replay raises the same id.

Records carry `version`; readers ignore fields they do not know, so a record with
more fields still reads (see `docs/asyncapi.json`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

import orjson

VERSION = 2  # 1: no lifecycle (one record per raised window), no version field


class AlertType(StrEnum):
    SMS_FAILURES = "sms_failures"  # failed + undelivered messages in a window reached the threshold
    SMS_FAILURE_RATE = "sms_failure_rate"  # failure rate over a minimum volume crossed a percentage
    CALL_FAILURES = "call_failures"
    CALL_FAILURE_RATE = "call_failure_rate"
    LOW_MOS = "low_mos"  # mean AudioInMos below the floor over a minimum number of calls
    FAILED_CALLS_COUNT = "failed_calls_count"  # the seed's rule: every N failed calls


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class AlertRule(StrEnum):
    WINDOW = "window"  # a window's figure against a threshold: fires, repeats, resolves
    COUNT = "count"  # every N since the last one (count, send, reset): one record each


class ScopeType(StrEnum):
    """What the processors count windows and raise alerts for, per callback."""

    ACCOUNT = "account"  # its AccountSid
    NUMBER = "number"  # our side of the message or call
    CAMPAIGN = "campaign"  # its campaign tag


def scope_key(scope_type: ScopeType, scope_value: str) -> str:
    """`campaign:spring-sale`, `number:+15550001111`, `account:AC...`."""
    return f"{scope_type}:{scope_value}"


def fingerprint(type_: AlertType, scope: str, window: str) -> str:
    """An alert's identity: `call_failures/campaign:spring/900s`, `failed_calls_count/...`."""
    return f"{type_}/{scope}/{window}"


def make_alert_id(
    fingerprint_: str, episode: float, state: AlertState = AlertState.FIRING, repeat: int = 0
) -> str:
    """The id of one notification: the alert, the window start (or count) its episode
    began with, the transition, and the repeat."""
    key = f"{fingerprint_}|{episode:.3f}|{state}|{repeat}"
    return f"AL{hashlib.sha256(key.encode()).hexdigest()[:32]}"


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str  # one per notification (transition or repeat): de-duplicate by it
    type: AlertType
    scope: str  # scope_key(...)
    window_start: float  # epoch seconds, UTC: the window the figures are of
    window_end: float
    count: int  # events of the alert's kind in the window (failures, or calls for low_mos)
    threshold: float  # the count, percentage or MOS floor that was crossed
    value: float  # the measured figure: count, failure rate in %, or mean MOS
    raised_at: float  # when this record was made (wall clock)
    fingerprint: str = ""  # the alert's identity across its records
    state: AlertState = AlertState.FIRING
    started_at: float = 0.0  # event time at which this episode began firing
    repeat: int = 0  # 0: the transition itself; n: the n-th reminder while firing
    silenced: bool = False  # matched a silence: on the topic and in ClickHouse, sent to no one
    rule: AlertRule = AlertRule.WINDOW
    version: int = VERSION

    def __post_init__(self) -> None:
        if not self.fingerprint:  # a version 1 record: its window's size made it distinct
            window = f"{self.window_end - self.window_start:.0f}s"
            object.__setattr__(self, "fingerprint", fingerprint(self.type, self.scope, window))
        if not self.started_at:  # a version 1 record: its episode was its window
            object.__setattr__(self, "started_at", self.window_start)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)  # orjson writes a dataclass as asdict() would, 10x faster

    @classmethod
    def from_bytes(cls, raw: bytes) -> Alert:
        """A record of any version; fields this reader does not know are ignored."""
        data: dict[str, Any] = orjson.loads(raw)
        known = {k: v for k, v in data.items() if k in _FIELDS}
        known["type"] = AlertType(known["type"])
        known["state"] = AlertState(known.get("state", AlertState.FIRING))
        known["rule"] = AlertRule(known.get("rule", AlertRule.WINDOW))
        return cls(**known)


_FIELDS = frozenset(f.name for f in fields(Alert))
