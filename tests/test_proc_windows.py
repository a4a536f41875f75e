"""Window maths: buckets, tumbling and hopping windows, replays, expiry, unconfirmed, rates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from contract.settings import Settings
from contract.windows import CallWindow, DeliveryWindow
from processors.state import Family
from processors.transitions import TransitionBatch
from processors.windows import Applied, ScopeWindows, WindowPlan, WindowSpec, window_records

B = 1_800_000_000  # a multiple of 60 and of 3600


def feed(
    w: ScopeWindows,
    items: Sequence[tuple[int, float, dict[str, Any]]],
    plan: WindowPlan,
    now: float,
    source: str = "sms/0",
) -> Applied:
    """Apply (offset, event time, deltas) increments the way the intake sends them."""
    batch = TransitionBatch()
    for offset, at, deltas in items:
        batch.add("k", source, plan.bucket(at), at, deltas, offset)
    return w.apply(TransitionBatch.from_bytes(batch.to_bytes()).scopes["k"], plan, now)


def one(w: ScopeWindows, size: int, start: int, plan: WindowPlan, now: float | None = None):
    spec = next(s for s in plan.specs if s.size_s == size)
    return w.figures(spec, [start], plan, now)[start]


def record(
    w: ScopeWindows, size: int, start: int, plan: WindowPlan, now: float
) -> DeliveryWindow | CallWindow:
    bucket = start + size - plan.bucket_s  # the last bucket of the window
    return next(
        r
        for r in window_records("s", w, {bucket}, plan, now)
        if r.window_s == size and r.window_start == start
    )


@pytest.fixture
def plan() -> WindowPlan:
    return WindowPlan.from_settings(Settings(_env_file=None, unconfirmed_after_s=900))  # type: ignore[call-arg]


def test_plan_from_settings_uses_the_common_bucket() -> None:
    plan = WindowPlan.from_settings(
        Settings(
            _env_file=None, window_tumbling_s=60, window_hopping_s=(900, 3600), window_hop_s=60
        )  # type: ignore[call-arg]
    )
    assert [(s.size_s, s.hop_s) for s in plan.specs] == [(60, 60), (900, 60), (3600, 60)]
    assert plan.bucket_s == 60
    odd = WindowPlan.from_settings(
        Settings(_env_file=None, window_tumbling_s=30, window_hopping_s=(300,), window_hop_s=45)  # type: ignore[call-arg]
    )
    assert odd.bucket_s == 15


def test_windows_containing_a_bucket() -> None:
    assert list(WindowSpec(60, 60).starts_containing(B + 120, 60)) == [B + 120]
    hopping = WindowSpec(900, 60).starts_containing(B + 120, 60)
    assert len(hopping) == 15
    assert hopping[0] == B + 120 - 840 and hopping[-1] == B + 120
    assert len(WindowSpec(3600, 60).starts_containing(B, 60)) == 60
    # a hop that does not divide the size
    assert list(WindowSpec(300, 120).starts_containing(B + 60, 60)) == [B - 120, B]


def test_a_count_is_in_every_window_that_holds_its_time(plan: WindowPlan) -> None:
    w = ScopeWindows(Family.DELIVERY)
    feed(w, [(1, B + 130.5, {"sent": 1, "pending": 1})], plan, now=B + 200)
    assert w.buckets == {B + 120: [1, 0, 0, 0, 1, 0]}
    found = plan.windows_containing({B + 120})
    assert [len(starts) for _, starts in found] == [1, 15, 60]
    for spec, starts in found:
        assert {f["sent"] for f in w.figures(spec, starts, plan).values()} == {1}
    assert one(w, 60, B + 60, plan)["sent"] == 0
    assert len(window_records("s", w, {B + 120}, plan, B + 200)) == 76


def test_window_sums_span_several_buckets(plan: WindowPlan) -> None:
    w = ScopeWindows(Family.DELIVERY)
    feed(w, [(i, B + 60 * i, {"sent": 1}) for i in range(20)], plan, now=B + 1200)
    spec = WindowSpec(900, 60)
    sums = w.figures(spec, [B - 840, B, B + 300, B + 600], plan)
    assert [sums[s]["sent"] for s in (B - 840, B, B + 300, B + 600)] == [1, 15, 15, 10]


def test_replayed_offsets_are_skipped(plan: WindowPlan) -> None:
    w = ScopeWindows(Family.DELIVERY)
    items = [(5, B + 1, {"sent": 1}), (5, B + 1, {"pending": 1}), (7, B + 2, {"sent": 1})]
    first = feed(w, items, plan, now=B + 10)
    assert first.advanced and first.duplicates == 0
    # a replay after a crash re-sends 5 and 7 in a batch that runs on to 9
    again = feed(w, items + [(9, B + 3, {"sent": 1})], plan, now=B + 10)
    assert again.duplicates == 3 and again.changed == {B}
    assert w.buckets[B][0] == 3  # offsets 5, 7, 9 once each
    assert w.offsets == {"sms/0": 9}
    # another source partition has its own offsets
    feed(w, [(5, B + 1, {"sent": 1})], plan, now=B + 10, source="sms/1")
    assert w.buckets[B][0] == 4


def test_identical_increments_travel_as_one_entry(plan: WindowPlan) -> None:
    batch = TransitionBatch()
    for offset in (3, 4, 8):
        batch.add("k", "sms/0", B, B + offset, {"delivered": 1}, offset)
    batch.add("k", "sms/0", B, B + 5, {"undelivered": 1}, 5)
    assert batch.scopes["k"]["sms/0"] == [
        [B, B + 8, {"delivered": 1}, [3, 4, 8]],
        [B, B + 5, {"undelivered": 1}, [5]],
    ]
    w = ScopeWindows(Family.DELIVERY)
    w.offsets["sms/0"] = 4  # 3 and 4 were applied before
    assert w.apply(batch.scopes["k"], plan, now=B + 60).duplicates == 2
    assert w.buckets[B][1:3] == [1, 1]


def test_serialization_round_trip(plan: WindowPlan) -> None:
    w = ScopeWindows(Family.CALLS)
    feed(w, [(1, B + 5, {"calls": 1, "completed": 1, "mos_sum": 4.5})], plan, B + 9)
    w.firing["low_mos/account:x/900s"] = [float(B), B + 5.0, 0]
    again = ScopeWindows.from_bytes(w.to_bytes())
    assert again == w


def test_buckets_expire_by_event_time_not_wall_clock(plan: WindowPlan) -> None:
    w = ScopeWindows(Family.DELIVERY)
    old = B - 10 * 3600
    # a replay of history, long after the wall clock passed it, still counts
    feed(w, [(1, old, {"sent": 1})], plan, now=B)
    assert old in w.buckets
    # once event time has moved on by more than window_expires_s, the old bucket goes
    feed(w, [(2, old + 7300, {"sent": 1})], plan, now=B)
    assert old not in w.buckets
    late = feed(w, [(3, old + 5, {"sent": 1})], plan, now=B)
    assert late.late == 1 and late.advanced and not late.changed


def test_future_event_times_do_not_expire_the_present(plan: WindowPlan) -> None:
    w = ScopeWindows(Family.DELIVERY)
    feed(w, [(1, B, {"sent": 1}), (2, B + 86400, {"sent": 1})], plan, now=B + 60)
    assert B in w.buckets and w.high == B + 60


def test_delivery_record_rate_and_unconfirmed(plan: WindowPlan) -> None:
    w = ScopeWindows(Family.DELIVERY)
    items = [
        (1, B + 1, {"sent": 1, "pending": 1}),
        (2, B + 2, {"sent": 1, "pending": 1}),
        (3, B + 3, {"sent": 1, "mms": 1}),
        (4, B + 9, {"delivered": 1}),
        (4, B + 1, {"pending": -1}),
        (5, B + 10, {"undelivered": 1, "sent": 1}),
        (6, B + 11, {"failed": 1}),
    ]
    feed(w, items, plan, now=B + 20)
    early = record(w, 60, B, plan, now=B + 100)
    assert isinstance(early, DeliveryWindow)
    assert (early.sent, early.delivered, early.undelivered, early.failed) == (4, 1, 1, 1)
    assert early.delivery_rate == pytest.approx(1 / 3)
    assert early.unconfirmed == 1  # the MMS at once; the pending SMS only after 900 s
    late = record(w, 3600, B - 3540, plan, now=B + 60 + 900)
    assert late.unconfirmed == 2  # type: ignore[union-attr]
    assert w.due_between(0, B + 959, plan) == set()
    assert w.due_between(0, B + 960, plan) == {B}
    assert w.next_due(plan) == B + 960
    w.due_published = B + 960
    assert w.next_due(plan) is None


def test_no_receipts_means_no_rate(plan: WindowPlan) -> None:
    w = ScopeWindows(Family.DELIVERY)
    feed(w, [(1, B, {"sent": 1, "pending": 1})], plan, now=B)
    assert record(w, 60, B, plan, B).delivery_rate is None  # type: ignore[union-attr]


def test_call_record_has_inbound_stats(plan: WindowPlan) -> None:
    w = ScopeWindows(Family.CALLS)
    items: list[tuple[int, float, dict[str, float]]] = [
        (1, B + 5, {"calls": 1, "completed": 1, "duration_s": 90, "mos_count": 1, "mos_sum": 4.5}),
        (2, B + 6, {"calls": 1, "completed": 1, "duration_s": 30, "mos_count": 1, "mos_sum": 3.5}),
        (3, B + 7, {"calls": 1, "failed": 1}),
        (4, B + 8, {"calls": 1, "busy": 1}),
    ]
    feed(w, items, plan, now=B + 9, source="inbound-call/1")
    r = record(w, 900, B - 840, plan, B + 9)
    assert isinstance(r, CallWindow)
    assert (r.calls, r.completed, r.failed, r.busy, r.duration_s) == (4, 2, 1, 1, 120)
    assert (r.mos_count, r.mos_mean) == (2, pytest.approx(4.0))
    assert (r.window_start, r.window_end) == (B - 840, B + 60)
