"""Alert rules over window figures. Pure.

- SMS: failures (failed + undelivered) in a window reaching `sms_failure_threshold`,
  or the failure rate failures / (delivered + undelivered + failed) reaching
  `failure_rate_pct` once that volume is at least `failure_rate_min_volume`.
- Calls: `failed` calls reaching `call_failure_threshold`, or failed / calls reaching
  the rate. Busy and no-answer are the callee's answer, not a failure of the system;
  they are counted in the call windows but raise nothing (the seed's split too).
- MOS: the mean AudioInMos below `mos_floor` over at least `mos_min_calls` calls.

Only windows of the sizes in `alert_windows_s` raise. One alert per scope and
window (the alert_id is derived from both, so a re-evaluated window finds it
raised); and after an alert, windows of the same type and size that overlap it
or lie within `alert_cooldown_s` of it stay quiet, so one burst raises once
although it sits in many hopping windows.
"""

from __future__ import annotations

from dataclasses import dataclass

from contract.alerts import Alert, AlertType, make_alert_id
from contract.errors import ConfigurationError
from contract.settings import Settings
from contract.windows import CallCounts, DeliveryCounts
from processors.state import Family
from processors.windows import ScopeWindows, WindowPlan


@dataclass(frozen=True, slots=True)
class Rules:
    sms_failure_threshold: int
    call_failure_threshold: int
    failure_rate_pct: float
    failure_rate_min_volume: int
    mos_floor: float
    mos_min_calls: int
    cooldown_s: int
    windows_s: tuple[int, ...]

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
            cooldown_s=settings.alert_cooldown_s,
            windows_s=settings.alert_windows_s,
        )


@dataclass(frozen=True, slots=True)
class Crossing:
    type: AlertType
    count: int
    threshold: float
    value: float


def crossings(family: Family, f: dict[str, float], rules: Rules) -> list[Crossing]:
    """The rules that one window's figures break."""
    found: list[Crossing] = []
    if family is Family.DELIVERY:
        failures = f[DeliveryCounts.FAILED] + f[DeliveryCounts.UNDELIVERED]
        volume = failures + f[DeliveryCounts.DELIVERED]
        if failures >= rules.sms_failure_threshold:
            found.append(
                Crossing(
                    AlertType.SMS_FAILURES, int(failures), rules.sms_failure_threshold, failures
                )
            )
        rate = _rate(failures, volume, rules)
        if rate is not None:
            found.append(
                Crossing(AlertType.SMS_FAILURE_RATE, int(failures), rules.failure_rate_pct, rate)
            )
        return found
    failed = f[CallCounts.FAILED]
    if failed >= rules.call_failure_threshold:
        found.append(
            Crossing(AlertType.CALL_FAILURES, int(failed), rules.call_failure_threshold, failed)
        )
    rate = _rate(failed, f[CallCounts.CALLS], rules)
    if rate is not None:
        found.append(
            Crossing(AlertType.CALL_FAILURE_RATE, int(failed), rules.failure_rate_pct, rate)
        )
    mos_count = f[CallCounts.MOS_COUNT]
    if mos_count >= rules.mos_min_calls:
        mean = f[CallCounts.MOS_SUM] / mos_count
        if mean < rules.mos_floor:
            found.append(Crossing(AlertType.LOW_MOS, int(mos_count), rules.mos_floor, mean))
    return found


def _rate(failures: float, volume: float, rules: Rules) -> float | None:
    if volume < rules.failure_rate_min_volume or volume <= 0:
        return None
    pct = 100.0 * failures / volume
    return pct if pct >= rules.failure_rate_pct else None


def evaluate(
    scope: str,
    windows: ScopeWindows,
    changed: set[int],
    plan: WindowPlan,
    rules: Rules,
    now: float,
) -> list[Alert]:
    """New alerts for the windows holding the changed buckets, recorded in `windows.raised`.

    Candidates are taken in window-start order, so of the hopping windows that one
    burst pushes over a threshold together, the earliest raises and the rest cool down.
    """
    candidates = [
        (start, spec.size_s, crossing)
        for spec, starts in plan.windows_containing(changed)
        if spec.size_s in rules.windows_s and starts
        for start, figures in windows.figures(spec, starts, plan).items()
        for crossing in crossings(windows.family, figures, rules)
    ]
    candidates.sort(key=lambda c: (c[0], c[1], c[2].type.value))
    alerts: list[Alert] = []
    for start, size, crossing in candidates:
        alert_id = make_alert_id(crossing.type, scope, float(start), size)
        end = float(start + size)
        if alert_id in windows.raised or _cooling(windows, crossing.type, size, start, end, rules):
            continue
        windows.raised[alert_id] = (crossing.type.value, size, float(start), end)
        alerts.append(
            Alert(
                alert_id=alert_id,
                type=crossing.type,
                scope=scope,
                window_start=float(start),
                window_end=end,
                count=crossing.count,
                threshold=float(crossing.threshold),
                value=float(crossing.value),
                raised_at=now,
            )
        )
    return alerts


def _cooling(
    windows: ScopeWindows, type_: AlertType, size: int, start: float, end: float, rules: Rules
) -> bool:
    return any(
        kind == type_.value
        and window_s == size
        and start < raised_end + rules.cooldown_s
        and raised_start < end + rules.cooldown_s
        for kind, window_s, raised_start, raised_end in windows.raised.values()
    )
