"""Window maths: a scope's counts in buckets, tumbling and hopping windows over them. Pure.

Counts are kept per bucket (the greatest common divisor of every window size and
hop: 60 s by default) and a window's figures are the sum of its buckets, so one
increment touches one bucket instead of every window that contains it (1 + 15 +
60 of them with the defaults). Windows are aligned to multiples of their hop
since the epoch.

`ScopeWindows` is what the window table holds per scope. It remembers, per raw
source partition, the highest offset it has applied: increments re-sent after a
crash carry the same offsets and are skipped, so a replay never counts twice.
Buckets expire by event time (the latest event time seen, never ahead of the
wall clock), not by the wall clock alone, so a replay of recent history counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from contract.settings import Settings
from contract.windows import CallWindow, DeliveryWindow
from processors.state import Family

FIELDS: dict[Family, tuple[str, ...]] = {
    Family.DELIVERY: ("sent", "delivered", "undelivered", "failed", "pending", "mms"),
    Family.CALLS: (
        "calls",
        "completed",
        "failed",
        "busy",
        "no_answer",
        "canceled",
        "duration_s",
        "mos_count",
        "mos_sum",
    ),
}
_INDEX = {family: {name: i for i, name in enumerate(names)} for family, names in FIELDS.items()}

Item = list[Any]  # [raw offset, event time, {field: delta}]


@dataclass(frozen=True, slots=True)
class WindowSpec:
    size_s: int
    hop_s: int  # equal to size_s for a tumbling window

    def starts_containing(self, bucket: int, bucket_s: int) -> range:
        """Starts of the windows [start, start + size) that hold the bucket [bucket, +bucket_s)."""
        first = math.ceil((bucket + bucket_s - self.size_s) / self.hop_s) * self.hop_s
        last = (bucket // self.hop_s) * self.hop_s
        return range(first, last + 1, self.hop_s)


@dataclass(frozen=True, slots=True)
class WindowPlan:
    specs: tuple[WindowSpec, ...]
    bucket_s: int
    expires_s: int
    unconfirmed_after_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> WindowPlan:
        specs = (WindowSpec(settings.window_tumbling_s, settings.window_tumbling_s),) + tuple(
            WindowSpec(size, settings.window_hop_s) for size in settings.window_hopping_s
        )
        bucket_s = math.gcd(*(n for spec in specs for n in (spec.size_s, spec.hop_s)))
        return cls(specs, bucket_s, settings.window_expires_s, settings.unconfirmed_after_s)

    def bucket(self, at: float) -> int:
        return int(at // self.bucket_s) * self.bucket_s

    def windows_containing(self, buckets: set[int]) -> list[tuple[WindowSpec, int]]:
        """Every (window, start) that holds one of the buckets, each once."""
        return sorted(
            {
                (spec, start)
                for bucket in buckets
                for spec in self.specs
                for start in spec.starts_containing(bucket, self.bucket_s)
            },
            key=lambda pair: (pair[0].size_s, pair[1]),
        )

    def due(self, bucket: int) -> float:
        """When a message still pending in this bucket has waited long enough to be unconfirmed."""
        return bucket + self.bucket_s + self.unconfirmed_after_s


@dataclass(frozen=True, slots=True)
class Applied:
    changed: set[int]  # buckets whose counts changed
    advanced: bool  # offsets moved on (the state must be written even if nothing counted)
    duplicates: int  # items at or below an offset already applied
    late: int  # items for buckets that had already expired


@dataclass(slots=True)
class ScopeWindows:
    family: Family
    buckets: dict[int, list[float]] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)  # "sms/0" -> highest offset applied
    high: float = 0.0  # the latest event time applied, capped at the wall clock
    unpublished: set[int] = field(default_factory=set)  # buckets changed since last published
    due_published: float = 0.0  # unconfirmed counts are published up to this wall-clock time
    raised: dict[str, tuple[str, int, float, float]] = field(default_factory=dict)
    # alert_id -> (type, window_s, window_start, window_end), kept until the window expires

    def apply(self, sources: dict[str, list[Item]], plan: WindowPlan, now: float) -> Applied:
        index = _INDEX[self.family]
        width = len(index)
        changed: set[int] = set()
        duplicates = late = 0
        advanced = False
        for source, items in sources.items():
            done = self.offsets.get(source, -1)
            highest = done
            for offset, at, deltas in items:
                if offset <= done:
                    duplicates += 1
                    continue
                highest = max(highest, offset)
                self.high = max(self.high, min(at, now))
                bucket = plan.bucket(at)
                if bucket + plan.bucket_s <= self.high - plan.expires_s:
                    late += 1
                    continue
                row = self.buckets.get(bucket)
                if row is None:
                    row = self.buckets[bucket] = [0] * width
                for name, delta in deltas.items():
                    row[index[name]] += delta
                changed.add(bucket)
            if highest > done:
                self.offsets[source] = highest
                advanced = True
        self.unpublished |= changed
        self.expire(plan)
        return Applied(changed, advanced, duplicates, late)

    def expire(self, plan: WindowPlan) -> None:
        horizon = self.high - plan.expires_s
        for bucket in [b for b in self.buckets if b + plan.bucket_s <= horizon]:
            del self.buckets[bucket]
        self.unpublished = {b for b in self.unpublished if b in self.buckets}
        for alert_id in [a for a, (_, _, _, end) in self.raised.items() if end <= horizon]:
            del self.raised[alert_id]

    def totals(self, spec: WindowSpec, start: int, bucket_s: int) -> list[float]:
        sums = [0.0] * len(FIELDS[self.family])
        for bucket in range(start, start + spec.size_s, bucket_s):
            row = self.buckets.get(bucket)
            if row is not None:
                sums = [a + b for a, b in zip(sums, row, strict=True)]
        return sums

    def figures(self, spec: WindowSpec, start: int, plan: WindowPlan) -> dict[str, float]:
        return dict(zip(FIELDS[self.family], self.totals(spec, start, plan.bucket_s), strict=True))

    def due_between(self, after: float, until: float, plan: WindowPlan) -> set[int]:
        """Buckets with pending messages that became unconfirmed in (after, until]."""
        if self.family is not Family.DELIVERY:
            return set()
        pending = _INDEX[Family.DELIVERY]["pending"]
        return {
            b for b, row in self.buckets.items() if row[pending] and after < plan.due(b) <= until
        }

    def next_due(self, plan: WindowPlan) -> float | None:
        """When pending messages next become unconfirmed (not yet published), if ever."""
        if self.family is not Family.DELIVERY:
            return None
        pending = _INDEX[Family.DELIVERY]["pending"]
        dues = [
            plan.due(b)
            for b, row in self.buckets.items()
            if row[pending] and plan.due(b) > self.due_published
        ]
        return min(dues, default=None)

    def unconfirmed(self, spec: WindowSpec, start: int, plan: WindowPlan, now: float) -> int:
        index = _INDEX[Family.DELIVERY]
        total = 0.0
        for bucket in range(start, start + spec.size_s, plan.bucket_s):
            row = self.buckets.get(bucket)
            if row is None:
                continue
            total += row[index["mms"]]
            if plan.due(bucket) <= now:
                total += row[index["pending"]]
        return int(total)

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "family": self.family.value,
                "buckets": self.buckets,
                "offsets": self.offsets,
                "high": self.high,
                "unpublished": sorted(self.unpublished),
                "due_published": self.due_published,
                "raised": self.raised,
            },
            option=orjson.OPT_NON_STR_KEYS,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> ScopeWindows:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(
            family=Family(data["family"]),
            buckets={int(b): row for b, row in data["buckets"].items()},
            offsets=data["offsets"],
            high=data["high"],
            unpublished=set(data["unpublished"]),
            due_published=data["due_published"],
            raised={k: tuple(v) for k, v in data["raised"].items()},  # type: ignore[misc]
        )


def window_record(
    scope: str,
    windows: ScopeWindows,
    spec: WindowSpec,
    start: int,
    plan: WindowPlan,
    now: float,
) -> DeliveryWindow | CallWindow:
    """The published figures of one window of one scope, as of `now`."""
    f = windows.figures(spec, start, plan)
    end = float(start + spec.size_s)
    if windows.family is Family.DELIVERY:
        receipts = f["delivered"] + f["undelivered"] + f["failed"]
        return DeliveryWindow(
            scope=scope,
            window_s=spec.size_s,
            window_start=float(start),
            window_end=end,
            sent=int(f["sent"]),
            delivered=int(f["delivered"]),
            undelivered=int(f["undelivered"]),
            failed=int(f["failed"]),
            unconfirmed=windows.unconfirmed(spec, start, plan, now),
            delivery_rate=f["delivered"] / receipts if receipts else None,
            updated_at=now,
        )
    return CallWindow(
        scope=scope,
        window_s=spec.size_s,
        window_start=float(start),
        window_end=end,
        calls=int(f["calls"]),
        completed=int(f["completed"]),
        failed=int(f["failed"]),
        busy=int(f["busy"]),
        no_answer=int(f["no_answer"]),
        canceled=int(f["canceled"]),
        duration_s=int(f["duration_s"]),
        mos_count=int(f["mos_count"]),
        mos_sum=f["mos_sum"],
        mos_mean=f["mos_sum"] / f["mos_count"] if f["mos_count"] else None,
        updated_at=now,
    )
