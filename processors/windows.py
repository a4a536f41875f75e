"""Window maths: a scope's counts in buckets, tumbling and hopping windows over them. Pure.

Counts are kept per bucket (the greatest common divisor of every window size and
hop: 60 s by default) and a window's figures are the sum of its buckets, so one
increment touches one bucket instead of every window that contains it (1 + 15 +
60 of them with the defaults). Windows are aligned to multiples of their hop
since the epoch.

`ScopeWindows` is what the window table holds per scope. It remembers, per raw
source partition, the highest offset it has applied: increments re-sent after a
crash carry the same offsets and are skipped, so a replay never counts twice.
Increments arrive as entries, one per bucket and set of deltas, with the raw offsets
of every transition that made them, so one entry can stand for thousands.
Buckets expire by event time (the latest event time seen, never ahead of the
wall clock), not by the wall clock alone, so a replay of recent history counts.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from contract import jsonbytes
from contract.settings import Settings
from contract.windows import CallCounts, CallWindow, DeliveryCounts, DeliveryWindow
from processors.state import Family

FIELDS: dict[Family, tuple[str, ...]] = {
    Family.DELIVERY: DeliveryCounts.COUNTED,
    Family.CALLS: CallCounts.COUNTED,
}
_INDEX = {family: {name: i for i, name in enumerate(names)} for family, names in FIELDS.items()}

Entry = list[Any]  # [bucket start, latest event time, {field: delta}, [raw offsets, ascending]]


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

    def windows_containing(self, buckets: Iterable[int]) -> list[tuple[WindowSpec, list[int]]]:
        """Every window that holds one of the buckets: per window spec, their starts."""
        return [
            (spec, sorted({s for b in buckets for s in spec.starts_containing(b, self.bucket_s)}))
            for spec in self.specs
        ]

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
    seen_at: float = 0.0  # wall-clock time increments were last applied
    unpublished: set[int] = field(default_factory=set)  # buckets changed since last published
    due_published: float = 0.0  # unconfirmed counts are published up to this wall-clock time
    # alerts firing now: fingerprint -> [window start its episode began at, event time, repeats]
    firing: dict[str, list[float]] = field(default_factory=dict)
    # the seed's count-and-reset rule: failed calls ever counted, alerts made of them, and
    # the event time the count since the last alert began
    failed_calls: float = 0.0
    count_alerts: int = 0
    count_since: float = 0.0

    def apply(self, sources: dict[str, list[Entry]], plan: WindowPlan, now: float) -> Applied:
        index = _INDEX[self.family]
        width = len(index)
        bucket_s, horizon_s = plan.bucket_s, plan.expires_s
        changed: set[int] = set()
        duplicates = late = 0
        advanced = False
        for source, entries in sources.items():
            done = self.offsets.get(source, -1)
            highest = done
            for bucket, at, deltas, offsets in entries:
                fresh = len(offsets) - bisect_right(offsets, done)
                duplicates += len(offsets) - fresh
                if not fresh:
                    continue
                highest = max(highest, offsets[-1])
                self.high = max(self.high, min(at, now))
                if bucket + bucket_s <= self.high - horizon_s:
                    late += fresh
                    continue
                row = self.buckets.get(bucket)
                if row is None:
                    row = self.buckets[bucket] = [0] * width
                for name, delta in deltas.items():
                    row[index[name]] += delta * fresh
                failed = deltas.get(CallCounts.FAILED) if self.family is Family.CALLS else None
                if failed:
                    self.failed_calls += failed * fresh
                    self.count_since = self.count_since or float(bucket)
                changed.add(bucket)
            if highest > done:
                self.offsets[source] = highest
                advanced = True
                self.seen_at = now
        self.unpublished |= changed
        self.expire(plan)
        return Applied(changed, advanced, duplicates, late)

    def expire(self, plan: WindowPlan) -> None:
        horizon = self.high - plan.expires_s
        for bucket in [b for b in self.buckets if b + plan.bucket_s <= horizon]:
            del self.buckets[bucket]
        self.unpublished = {b for b in self.unpublished if b in self.buckets}

    def figures(
        self, spec: WindowSpec, starts: list[int], plan: WindowPlan, now: float | None = None
    ) -> dict[int, dict[str, float]]:
        """The sums of the windows starting at `starts` (ascending), from running sums of the
        buckets they span; with `now`, delivery windows get their unconfirmed count too."""
        names = FIELDS[self.family]
        unconfirmed = now is not None and self.family is Family.DELIVERY
        if unconfirmed:
            names = (*names, DeliveryCounts.UNCONFIRMED)
            pending = _INDEX[Family.DELIVERY][DeliveryCounts.PENDING]
            mms = _INDEX[Family.DELIVERY][DeliveryCounts.MMS]
        zero = [0.0] * len(names)
        running = [zero]
        first, bucket_s = starts[0], plan.bucket_s
        for bucket in range(first, starts[-1] + spec.size_s, bucket_s):
            row = self.buckets.get(bucket)
            if row is None:
                running.append(running[-1])
                continue
            if unconfirmed:
                due = row[pending] if plan.due(bucket) <= now else 0  # type: ignore[operator]
                row = [*row, row[mms] + due]
            running.append([a + b for a, b in zip(running[-1], row, strict=True)])
        span = spec.size_s // bucket_s
        out = {}
        for start in starts:
            i = (start - first) // bucket_s
            out[start] = dict(
                zip(
                    names,
                    [b - a for a, b in zip(running[i], running[i + span], strict=True)],
                    strict=True,
                )
            )
        return out

    def due_between(self, after: float, until: float, plan: WindowPlan) -> set[int]:
        """Buckets with pending messages that became unconfirmed in (after, until]."""
        if self.family is not Family.DELIVERY:
            return set()
        pending = _INDEX[Family.DELIVERY][DeliveryCounts.PENDING]
        return {
            b for b, row in self.buckets.items() if row[pending] and after < plan.due(b) <= until
        }

    def next_due(self, plan: WindowPlan) -> float | None:
        """When pending messages next become unconfirmed (not yet published), if ever."""
        if self.family is not Family.DELIVERY:
            return None
        pending = _INDEX[Family.DELIVERY][DeliveryCounts.PENDING]
        dues = [
            plan.due(b)
            for b, row in self.buckets.items()
            if row[pending] and plan.due(b) > self.due_published
        ]
        return min(dues, default=None)

    def to_bytes(self) -> bytes:
        """The value kept in the window table: an exact-size copy (`jsonbytes`)."""
        return jsonbytes.dumps(
            {
                "family": self.family.value,
                "buckets": self.buckets,
                "offsets": self.offsets,
                "high": self.high,
                "seen_at": self.seen_at,
                "unpublished": sorted(self.unpublished),
                "due_published": self.due_published,
                "firing": self.firing,
                "failed_calls": self.failed_calls,
                "count_alerts": self.count_alerts,
                "count_since": self.count_since,
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
            seen_at=data.get("seen_at", 0.0),
            unpublished=set(data["unpublished"]),
            due_published=data["due_published"],
            # states written before the lifecycle have none of these
            firing=data.get("firing", {}),
            failed_calls=data.get("failed_calls", 0.0),
            count_alerts=data.get("count_alerts", 0),
            count_since=data.get("count_since", 0.0),
        )


def window_records(
    scope: str, windows: ScopeWindows, buckets: Iterable[int], plan: WindowPlan, now: float
) -> list[DeliveryWindow | CallWindow]:
    """The figures, as of `now`, of every window of a scope that holds one of the buckets."""
    records: list[DeliveryWindow | CallWindow] = []
    for spec, starts in plan.windows_containing(buckets):
        if not starts:
            continue
        for start, f in windows.figures(spec, starts, plan, now).items():
            records.append(_record(scope, windows.family, spec, start, f, now))
    return records


def _record(
    scope: str, family: Family, spec: WindowSpec, start: int, f: dict[str, float], now: float
) -> DeliveryWindow | CallWindow:
    end = float(start + spec.size_s)
    if family is Family.DELIVERY:
        receipts = (
            f[DeliveryCounts.DELIVERED] + f[DeliveryCounts.UNDELIVERED] + f[DeliveryCounts.FAILED]
        )
        return DeliveryWindow(
            scope=scope,
            window_s=spec.size_s,
            window_start=float(start),
            window_end=end,
            sent=int(f[DeliveryCounts.SENT]),
            delivered=int(f[DeliveryCounts.DELIVERED]),
            undelivered=int(f[DeliveryCounts.UNDELIVERED]),
            failed=int(f[DeliveryCounts.FAILED]),
            unconfirmed=int(f[DeliveryCounts.UNCONFIRMED]),
            delivery_rate=f[DeliveryCounts.DELIVERED] / receipts if receipts else None,
            updated_at=now,
        )
    mos_count, mos_sum = f[CallCounts.MOS_COUNT], f[CallCounts.MOS_SUM]
    return CallWindow(
        scope=scope,
        window_s=spec.size_s,
        window_start=float(start),
        window_end=end,
        calls=int(f[CallCounts.CALLS]),
        completed=int(f[CallCounts.COMPLETED]),
        failed=int(f[CallCounts.FAILED]),
        busy=int(f[CallCounts.BUSY]),
        no_answer=int(f[CallCounts.NO_ANSWER]),
        canceled=int(f[CallCounts.CANCELED]),
        duration_s=int(f[CallCounts.DURATION_S]),
        mos_count=int(mos_count),
        mos_sum=mos_sum,
        mos_mean=mos_sum / mos_count if mos_count else None,
        updated_at=now,
    )
