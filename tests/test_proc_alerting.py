"""Alert rules: thresholds, rates over a minimum volume, low MOS, once per window, cool-down."""

from __future__ import annotations

from typing import Any

import pytest

from contract.alerts import AlertType, make_alert_id
from contract.errors import ConfigurationError
from contract.settings import Settings
from processors.alerting import Rules, crossings, evaluate
from processors.state import Family
from processors.windows import ScopeWindows, WindowPlan
from tests.test_proc_windows import feed

B = 1_800_000_000


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "sms_failure_threshold": 10,
        "call_failure_threshold": 5,
        "failure_rate_pct": 30.0,
        "failure_rate_min_volume": 20,
        "mos_min_calls": 3,
        "alert_cooldown_s": 900,
        "alert_windows_s": (900,),
    }
    return Settings(_env_file=None, **(base | overrides))  # type: ignore[call-arg]


@pytest.fixture
def rules() -> Rules:
    return Rules.from_settings(settings())


@pytest.fixture
def plan() -> WindowPlan:
    return WindowPlan.from_settings(settings())


def sms_figures(**f: float) -> dict[str, float]:
    return {"sent": 0, "delivered": 0, "undelivered": 0, "failed": 0, "pending": 0, "mms": 0} | f


def call_figures(**f: float) -> dict[str, float]:
    names = ("calls", "completed", "failed", "busy", "no_answer", "canceled")
    return dict.fromkeys(names, 0.0) | {"duration_s": 0, "mos_count": 0, "mos_sum": 0} | f


def test_sms_failure_count_reaching_the_threshold(rules: Rules) -> None:
    assert (
        crossings(Family.DELIVERY, sms_figures(failed=4, undelivered=5, delivered=90), rules) == []
    )
    [c] = crossings(Family.DELIVERY, sms_figures(failed=4, undelivered=6, delivered=90), rules)
    assert (c.type, c.count, c.threshold, c.value) == (AlertType.SMS_FAILURES, 10, 10, 10)


def test_sms_failure_rate_needs_the_minimum_volume(rules: Rules) -> None:
    # 50% but only 8 receipts
    assert crossings(Family.DELIVERY, sms_figures(undelivered=4, delivered=4), rules) == []
    [c] = crossings(Family.DELIVERY, sms_figures(undelivered=6, delivered=14), rules)
    assert c.type is AlertType.SMS_FAILURE_RATE and c.value == pytest.approx(30.0)
    # unconfirmed messages are not failures and not volume
    assert crossings(Family.DELIVERY, sms_figures(undelivered=5, delivered=15, mms=50), rules) == []


def test_call_failures_exclude_busy_and_no_answer(rules: Rules) -> None:
    quiet = call_figures(calls=100, completed=80, busy=10, no_answer=6, failed=4)
    assert crossings(Family.CALLS, quiet, rules) == []
    loud = call_figures(calls=10, completed=4, failed=6)
    assert {c.type for c in crossings(Family.CALLS, loud, rules)} == {AlertType.CALL_FAILURES}
    rate = call_figures(calls=20, completed=14, failed=6)
    types = {c.type for c in crossings(Family.CALLS, rate, rules)}
    assert types == {AlertType.CALL_FAILURES, AlertType.CALL_FAILURE_RATE}


def test_low_mos_needs_the_minimum_calls(rules: Rules) -> None:
    few = call_figures(calls=2, completed=2, mos_count=2, mos_sum=4.0)
    assert crossings(Family.CALLS, few, rules) == []
    [c] = crossings(Family.CALLS, call_figures(calls=3, completed=3, mos_count=3, mos_sum=9), rules)
    assert (c.type, c.count, c.threshold, c.value) == (AlertType.LOW_MOS, 3, 3.5, 3.0)
    fine = call_figures(calls=3, completed=3, mos_count=3, mos_sum=10.5)
    assert crossings(Family.CALLS, fine, rules) == []


def test_one_burst_raises_once_across_its_hopping_windows(plan: WindowPlan, rules: Rules) -> None:
    w = ScopeWindows(Family.DELIVERY)
    changed = feed(w, [(i, B + 10, {"failed": 1}) for i in range(12)], plan, B).changed
    [alert] = evaluate("campaign:x", w, changed, plan, rules, now=B + 30)
    # of the 15 windows of 15 minutes holding the burst, the earliest raises
    assert (alert.type, alert.window_start, alert.window_end) == (
        AlertType.SMS_FAILURES,
        B - 840,
        B + 60,
    )
    assert alert.alert_id == make_alert_id(AlertType.SMS_FAILURES, "campaign:x", B - 840, 900)
    assert alert.count == 12 and alert.raised_at == B + 30
    # more failures in the same windows raise nothing new
    more = feed(w, [(20, B + 20, {"failed": 1})], plan, B).changed
    assert evaluate("campaign:x", w, more, plan, rules, now=B + 40) == []


def test_cool_down_then_a_new_window_raises(plan: WindowPlan) -> None:
    rules = Rules.from_settings(settings(failure_rate_min_volume=1000))
    w = ScopeWindows(Family.DELIVERY)
    first = feed(w, [(i, B, {"failed": 1}) for i in range(10)], plan, B).changed
    assert len(evaluate("a", w, first, plan, rules, now=B)) == 1
    # 10 minutes later: every window holding it starts within 15 minutes of the first's end
    t = B + 600
    soon = feed(w, [(100 + i, t, {"failed": 1}) for i in range(10)], plan, t).changed
    assert evaluate("a", w, soon, plan, rules, now=t) == []
    # 40 minutes later the windows are clear of the cool-down
    t = B + 2400
    later = feed(w, [(200 + i, t, {"failed": 1}) for i in range(10)], plan, t).changed
    [alert] = evaluate("a", w, later, plan, rules, now=t)
    assert alert.window_start == B + 2400 - 840


def test_only_the_configured_window_sizes_alert(plan: WindowPlan) -> None:
    rules = Rules.from_settings(settings(alert_windows_s=(60, 3600)))
    w = ScopeWindows(Family.DELIVERY)
    changed = feed(w, [(i, B, {"failed": 1}) for i in range(10)], plan, B).changed
    sizes = sorted(a.window_end - a.window_start for a in evaluate("a", w, changed, plan, rules, B))
    assert sizes == [60, 3600]


def test_alert_windows_must_be_configured_windows() -> None:
    with pytest.raises(ConfigurationError, match="ALERT_WINDOWS_S"):
        Rules.from_settings(settings(alert_windows_s=(120,)))
