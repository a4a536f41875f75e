"""Alert rules over window figures, and each alert's lifecycle. Pure.

- SMS: failures (failed + undelivered) in a window reaching `sms_failure_threshold`,
  or the failure rate failures / (delivered + undelivered + failed) reaching
  `failure_rate_pct` once that volume is at least `failure_rate_min_volume`.
- Calls: `failed` calls reaching `call_failure_threshold`, or failed / calls reaching
  the rate. Busy and no-answer are the callee's answer, not a failure of the system;
  they are counted in the call windows but raise nothing (the seed's split too).
- MOS: the mean AudioInMos below `mos_floor` over at least `mos_min_calls` calls.

Lifecycle, per alert (type, scope, window size: its fingerprint), for each size in
`alert_windows_s`, judged at a scope's latest event time: the alert fires when the
latest window (the one still filling) breaks its rule, and resolves when both that
window and the last complete one are clear by the hysteresis margin
(`alert_hysteresis_pct` under the threshold, `mos_resolve_margin` above the MOS floor),
so a figure hovering at the line fires once and stays firing. While firing it is
notified again every `alert_repeat_s` of event time. What is firing lives in the
scope's `ScopeWindows.firing`, with the window start its episode began at: the ids of
its notifications derive from that, so a replay repeats them exactly.

The seed's own rule (`alert_every_failed_calls`): every N failed calls of the account
since the last such alert, however far apart; the k-th alert is the one for k*N.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from contract.alerts import (
    Alert,
    AlertRule,
    AlertState,
    AlertType,
    ScopeType,
    fingerprint,
    make_alert_id,
)
from contract.errors import ConfigurationError
from contract.settings import Settings
from contract.windows import CallCounts, DeliveryCounts
from processors.state import Family
from processors.windows import ScopeWindows, WindowPlan, WindowSpec

WINDOW_TYPES: dict[Family, tuple[AlertType, ...]] = {
    Family.DELIVERY: (AlertType.SMS_FAILURES, AlertType.SMS_FAILURE_RATE),
    Family.CALLS: (AlertType.CALL_FAILURES, AlertType.CALL_FAILURE_RATE, AlertType.LOW_MOS),
}


@dataclass(frozen=True, slots=True)
class Rules:
    sms_failure_threshold: int
    call_failure_threshold: int
    failure_rate_pct: float
    failure_rate_min_volume: int
    mos_floor: float
    mos_min_calls: int
    windows_s: tuple[int, ...]
    hysteresis_pct: float = 20.0
    mos_resolve_margin: float = 0.2
    repeat_s: int = 0
    every_failed_calls: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        sizes = {settings.window_tumbling_s, *settings.window_hopping_s}
        if not set(settings.alert_windows_s) <= sizes:
            raise ConfigurationError(
                f"SWITCHBOARD_ALERT_WINDOWS_S: {settings.alert_windows_s} must be window sizes "
                f"of the tumbling or hopping windows ({sorted(sizes)})"
            )
        return cls(
            sms_failure_threshold=settings.sms_failure_threshold,
            call_failure_threshold=settings.call_failure_threshold,
            failure_rate_pct=settings.failure_rate_pct,
            failure_rate_min_volume=settings.failure_rate_min_volume,
            mos_floor=settings.mos_floor,
            mos_min_calls=settings.mos_min_calls,
            windows_s=settings.alert_windows_s,
            hysteresis_pct=settings.alert_hysteresis_pct,
            mos_resolve_margin=settings.mos_resolve_margin,
            repeat_s=settings.alert_repeat_s,
            every_failed_calls=settings.alert_every_failed_calls,
        )

    def threshold(self, type_: AlertType) -> float:
        return {
            AlertType.SMS_FAILURES: self.sms_failure_threshold,
            AlertType.CALL_FAILURES: self.call_failure_threshold,
            AlertType.SMS_FAILURE_RATE: self.failure_rate_pct,
            AlertType.CALL_FAILURE_RATE: self.failure_rate_pct,
            AlertType.LOW_MOS: self.mos_floor,
            AlertType.FAILED_CALLS_COUNT: self.every_failed_calls,
        }[type_]

    def breaks(self, type_: AlertType, measured: Measure | None) -> bool:
        if measured is None:
            return False
        if type_ is AlertType.LOW_MOS:
            return measured.value < self.mos_floor
        return measured.value >= self.threshold(type_)

    def clear(self, type_: AlertType, measured: Measure | None) -> bool:
        """Clear by the hysteresis margin; a figure that cannot be judged (too few
        receipts or calls) is clear too."""
        if measured is None:
            return True
        if type_ is AlertType.LOW_MOS:
            return measured.value >= self.mos_floor + self.mos_resolve_margin
        return measured.value < self.threshold(type_) * (1 - self.hysteresis_pct / 100)


@dataclass(frozen=True, slots=True)
class Measure:
    count: int  # events of the alert's kind: failures, or calls for low_mos
    value: float  # what the threshold is compared with


@dataclass(frozen=True, slots=True)
class Crossing:
    type: AlertType
    count: int
    threshold: float
    value: float


def measure(type_: AlertType, f: dict[str, float], rules: Rules) -> Measure | None:
    """One window's figure for a rule; None if the window has too little to judge."""
    if type_ in (AlertType.SMS_FAILURES, AlertType.SMS_FAILURE_RATE):
        failures = f[DeliveryCounts.FAILED] + f[DeliveryCounts.UNDELIVERED]
        if type_ is AlertType.SMS_FAILURES:
            return Measure(int(failures), failures)
        return _rate(failures, failures + f[DeliveryCounts.DELIVERED], rules)
    if type_ is AlertType.LOW_MOS:
        calls = f[CallCounts.MOS_COUNT]
        if calls < rules.mos_min_calls:
            return None
        return Measure(int(calls), f[CallCounts.MOS_SUM] / calls)
    failed = f[CallCounts.FAILED]
    if type_ is AlertType.CALL_FAILURES:
        return Measure(int(failed), failed)
    return _rate(failed, f[CallCounts.CALLS], rules)


def _rate(failures: float, volume: float, rules: Rules) -> Measure | None:
    if volume < rules.failure_rate_min_volume or volume <= 0:
        return None
    return Measure(int(failures), 100.0 * failures / volume)


def crossings(family: Family, f: dict[str, float], rules: Rules) -> list[Crossing]:
    """The rules that one window's figures break."""
    found = []
    for type_ in WINDOW_TYPES[family]:
        m = measure(type_, f, rules)
        if m is not None and rules.breaks(type_, m):
            found.append(Crossing(type_, m.count, rules.threshold(type_), m.value))
    return found


def evaluate(
    scope: str, windows: ScopeWindows, plan: WindowPlan, rules: Rules, at: float, now: float
) -> list[Alert]:
    """The notifications due for a scope judged at event time `at` (its latest, or the
    wall clock once it has gone quiet), recorded in `windows.firing`."""
    alerts: list[Alert] = []
    for size in rules.windows_s:
        alerts += _lifecycle(scope, windows, plan, _spec(plan, size), rules, at, now)
    if rules.every_failed_calls and windows.family is Family.CALLS:
        alerts += _every_n(scope, windows, rules, at, now)
    return alerts


def _spec(plan: WindowPlan, size: int) -> WindowSpec:
    """Of the windows of this size, the one that moves in the smallest steps."""
    return min((s for s in plan.specs if s.size_s == size), key=lambda s: s.hop_s)


def _lifecycle(
    scope: str,
    windows: ScopeWindows,
    plan: WindowPlan,
    spec: WindowSpec,
    rules: Rules,
    at: float,
    now: float,
) -> list[Alert]:
    bucket = plan.bucket(at)
    current = spec.starts_containing(bucket, plan.bucket_s)[0]  # ends next: still filling
    complete = (bucket - spec.size_s) // spec.hop_s * spec.hop_s  # the last one that ended
    figures = windows.figures(spec, [complete, current], plan)
    alerts = []
    for type_ in WINDOW_TYPES[windows.family]:
        alert = _transition(scope, windows, spec, rules, type_, figures, (complete, current), at)
        if alert is not None:
            alerts.append(dataclasses.replace(alert, raised_at=now))
    return alerts


def _transition(
    scope: str,
    windows: ScopeWindows,
    spec: WindowSpec,
    rules: Rules,
    type_: AlertType,
    figures: dict[int, dict[str, float]],
    starts: tuple[int, int],
    at: float,
) -> Alert | None:
    """One alert's notification due, if any: fired, repeated or resolved."""
    complete, current = starts
    fp = fingerprint(type_, scope, f"{spec.size_s}s")
    now_m = measure(type_, figures[current], rules)

    def note(
        state: AlertState, start: int, m: Measure | None, episode: float, began: float, n: int
    ) -> Alert:
        return Alert(
            alert_id=make_alert_id(fp, episode, state, n),
            type=type_,
            scope=scope,
            window_start=float(start),
            window_end=float(start + spec.size_s),
            count=m.count if m else 0,
            threshold=float(rules.threshold(type_)),
            value=m.value if m else 0.0,
            raised_at=at,
            fingerprint=fp,
            state=state,
            started_at=began,
            repeat=n,
        )

    firing = windows.firing.get(fp)
    if firing is None:
        if not rules.breaks(type_, now_m):
            return None
        windows.firing[fp] = [float(current), at, 0]
        return note(AlertState.FIRING, current, now_m, current, at, 0)
    episode, began, repeats = float(firing[0]), float(firing[1]), int(firing[2])
    done_m = measure(type_, figures[complete], rules)
    if rules.clear(type_, now_m) and rules.clear(type_, done_m):
        del windows.firing[fp]
        return note(AlertState.RESOLVED, complete, done_m, episode, began, 0)
    if rules.repeat_s and (n := int((at - began) // rules.repeat_s)) > repeats:
        firing[2] = n
        return note(AlertState.FIRING, current, now_m, episode, began, n)
    return None


def _every_n(scope: str, windows: ScopeWindows, rules: Rules, at: float, now: float) -> list[Alert]:
    """The seed's count-and-reset on the account: the k-th alert at k*N failed calls."""
    if not scope.startswith(f"{ScopeType.ACCOUNT}:"):
        return []
    n = rules.every_failed_calls
    fp = fingerprint(AlertType.FAILED_CALLS_COUNT, scope, "count")
    alerts = []
    for k in range(windows.count_alerts + 1, int(windows.failed_calls) // n + 1):
        alerts.append(
            Alert(
                alert_id=make_alert_id(fp, k, AlertState.FIRING),
                type=AlertType.FAILED_CALLS_COUNT,
                scope=scope,
                window_start=windows.count_since or at,
                window_end=at,
                count=n,
                threshold=float(n),
                value=float(n),
                raised_at=now,
                fingerprint=fp,
                started_at=at,
                rule=AlertRule.COUNT,
            )
        )
        windows.count_alerts, windows.count_since = k, at
    return alerts
