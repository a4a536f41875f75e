"""Window figures the processors publish on `metrics.delivery` and `metrics.calls`.

A record is the latest value of one (scope, window size, window start); a later
record for the same key supersedes it, so a sink keeps the last one
(ReplacingMergeTree on that key).

`DeliveryCounts` and `CallCounts` name what the processors count per scope and time
bucket: the keys of the increments on `processors.transitions`, and of the sums the
window agent makes of them into these records. Plain strings, not StrEnum members:
they are keys of dicts orjson writes on the intake's hot path, and orjson takes a key
of a str subclass only with OPT_NON_STR_KEYS, a third slower.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

import orjson

# Records written before this field existed carry none, and read as version 1.
WINDOW_VERSION = 1


class DeliveryCounts:
    SENT: Final = "sent"
    DELIVERED: Final = "delivered"
    UNDELIVERED: Final = "undelivered"
    FAILED: Final = "failed"
    PENDING: Final = "pending"  # at sent with no receipt yet
    MMS: Final = "mms"  # at sent with media: MMS never gets a receipt
    # A bucket's row, in this order (the window table stores rows).
    COUNTED: Final = (SENT, DELIVERED, UNDELIVERED, FAILED, PENDING, MMS)
    # A figure, not counted: mms, plus pending once `unconfirmed_after_s` has passed.
    UNCONFIRMED: Final = "unconfirmed"


class CallCounts:
    CALLS: Final = "calls"
    COMPLETED: Final = "completed"
    FAILED: Final = "failed"
    BUSY: Final = "busy"
    NO_ANSWER: Final = "no_answer"
    CANCELED: Final = "canceled"
    DURATION_S: Final = "duration_s"
    MOS_COUNT: Final = "mos_count"
    MOS_SUM: Final = "mos_sum"
    # A bucket's row, in this order (the window table stores rows).
    COUNTED: Final = (
        CALLS,
        COMPLETED,
        FAILED,
        BUSY,
        NO_ANSWER,
        CANCELED,
        DURATION_S,
        MOS_COUNT,
        MOS_SUM,
    )


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
    version: int = WINDOW_VERSION

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)  # orjson writes a dataclass as asdict() would, 10x faster

    @classmethod
    def from_bytes(cls, raw: bytes) -> DeliveryWindow:
        """A record of any version; fields this reader does not know are ignored."""
        return cls(**_known(raw, _DELIVERY_FIELDS))


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
    version: int = WINDOW_VERSION

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)  # orjson writes a dataclass as asdict() would, 10x faster

    @classmethod
    def from_bytes(cls, raw: bytes) -> CallWindow:
        """A record of any version; fields this reader does not know are ignored."""
        return cls(**_known(raw, _CALL_FIELDS))


def _known(raw: bytes, names: frozenset[str]) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(raw)
    return {k: v for k, v in data.items() if k in names}


_DELIVERY_FIELDS = frozenset(f.name for f in fields(DeliveryWindow))
_CALL_FIELDS = frozenset(f.name for f in fields(CallWindow))
