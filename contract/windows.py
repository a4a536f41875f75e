"""Window figures the processors publish on `metrics.delivery` and `metrics.calls`.

A record is the latest value of one (scope, window size, window start); a later
record for the same key supersedes it, so a sink keeps the last one
(ReplacingMergeTree on that key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class DeliveryWindow:
    scope: str  # contract.alerts.scope_key: campaign:..., number:..., account:...
    window_s: int
    window_start: float  # epoch seconds, UTC
    window_end: float
    sent: int  # messages whose state reached sent (or beyond) in the window
    delivered: int
    undelivered: int
    failed: int
    unconfirmed: int  # at sent with no receipt after the configured time (MMS always)
    delivery_rate: float | None  # delivered / (delivered + undelivered + failed)
    updated_at: float

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)  # orjson writes a dataclass as asdict() would, 10x faster

    @classmethod
    def from_bytes(cls, raw: bytes) -> DeliveryWindow:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(**data)


@dataclass(frozen=True, slots=True)
class CallWindow:
    scope: str
    window_s: int
    window_start: float
    window_end: float
    calls: int  # calls that reached a final status in the window
    completed: int
    failed: int
    busy: int
    no_answer: int
    canceled: int
    duration_s: int  # sum of CallDuration of those calls
    mos_count: int  # calls that reported AudioInMos
    mos_sum: float
    mos_mean: float | None
    updated_at: float

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)  # orjson writes a dataclass as asdict() would, 10x faster

    @classmethod
    def from_bytes(cls, raw: bytes) -> CallWindow:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(**data)
