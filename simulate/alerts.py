"""The alerts a simulated campaign must raise, and the callback that crosses each threshold.

`Thresholds` defaults to the `Settings` field defaults and `Thresholds.from_settings`
reads a running configuration, so the expected alerts follow the pipeline's.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contract.alerts import AlertType, ScopeType, scope_key
from contract.settings import Settings
from contract.statuses import CALL_FAILED, SMS_FAILED
from simulate.callbacks import INBOUND, SMS, VOICE, Callback, Entity

if TYPE_CHECKING:
    from simulate.truth import Outcome


def _setting(name: str) -> Any:
    return Settings.model_fields[name].default


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The alert thresholds the processors run with (defaults as in Settings)."""

    sms_failures: int = _setting("sms_failure_threshold")
    call_failures: int = _setting("call_failure_threshold")
    failure_rate_pct: float = _setting("failure_rate_pct")
    failure_rate_min_volume: int = _setting("failure_rate_min_volume")
    mos_floor: float = _setting("mos_floor")
    mos_min_calls: int = _setting("mos_min_calls")

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            sms_failures=settings.sms_failure_threshold,
            call_failures=settings.call_failure_threshold,
            failure_rate_pct=settings.failure_rate_pct,
            failure_rate_min_volume=settings.failure_rate_min_volume,
            mos_floor=settings.mos_floor,
            mos_min_calls=settings.mos_min_calls,
        )


def expected_alerts(outcomes: list[Outcome], account: str, th: Thresholds) -> list[dict[str, Any]]:
    """Alerts the totals imply, assuming the run fits in one window and one cool-down.

    Count alerts (`sms_failures`, `call_failures`) are certain once the count is reached;
    rate and MOS alerts are judged on the final figures (a transient crossing earlier in
    the run may raise one too), and are marked `"on": "final"`.
    """
    scopes: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        if o.kind not in (SMS, VOICE, INBOUND):
            continue
        for scope in (
            scope_key(ScopeType.ACCOUNT, account),
            scope_key(ScopeType.CAMPAIGN, o.campaign) if o.campaign else None,
            scope_key(ScopeType.NUMBER, o.number),
        ):
            if scope:
                scopes[scope].append(o)
    alerts: list[dict[str, Any]] = []
    for scope, group in sorted(scopes.items()):
        messages = [o for o in group if o.kind is SMS]
        calls = [o for o in group if o.kind in (VOICE, INBOUND)]
        sms_failures = sum(1 for o in messages if o.status in SMS_FAILED)
        sms_volume = sum(1 for o in messages if o.status in ("delivered", *SMS_FAILED))
        call_failures = sum(1 for o in calls if o.status in CALL_FAILED)
        mos = [o.mos for o in calls if o.mos is not None]

        def add(
            type_: AlertType, threshold: float, value: float, on: str, scope: str = scope
        ) -> None:
            alerts.append(
                {"type": type_.value, "scope": scope, "threshold": threshold, "value": value}
                | {"on": on}
            )

        if sms_failures >= th.sms_failures:
            add(AlertType.SMS_FAILURES, th.sms_failures, sms_failures, "count")
        if sms_volume >= th.failure_rate_min_volume:
            pct = round(100 * sms_failures / sms_volume, 2)
            if pct >= th.failure_rate_pct:
                add(AlertType.SMS_FAILURE_RATE, th.failure_rate_pct, pct, "final")
        if call_failures >= th.call_failures:
            add(AlertType.CALL_FAILURES, th.call_failures, call_failures, "count")
        if len(calls) >= th.failure_rate_min_volume:
            pct = round(100 * call_failures / len(calls), 2)
            if pct >= th.failure_rate_pct:
                add(AlertType.CALL_FAILURE_RATE, th.failure_rate_pct, pct, "final")
        if len(mos) >= th.mos_min_calls:
            mean = round(sum(mos) / len(mos), 4)
            if mean < th.mos_floor:
                add(AlertType.LOW_MOS, th.mos_floor, mean, "final")
    return alerts


def failure_alert(cb: Callback) -> AlertType | None:
    """The count alert a callback feeds: a message's or call's final failure, else None."""
    e = cb.entity
    if cb.step != len(e.statuses) - 1:
        return None
    if e.kind is SMS and e.final in SMS_FAILED:
        return AlertType.SMS_FAILURES
    if e.kind in (VOICE, INBOUND) and e.final in CALL_FAILED:
        return AlertType.CALL_FAILURES
    return None


def add_crossings(callbacks: Sequence[Callback], alerts: list[dict[str, Any]]) -> None:
    """Adds `crossing_index` to count alerts: the callback (in send order) that
    brought its scope's failures to the threshold. Benchmarks time alerts from it."""
    wanted = {(a["type"], a["scope"]): a for a in alerts if a["on"] == "count"}
    if not wanted:
        return
    counts: Counter[tuple[str, str]] = Counter()
    seen: set[str] = set()
    for index, cb in enumerate(callbacks):
        alert_type = failure_alert(cb)
        if alert_type is None or cb.sid in seen:
            continue
        seen.add(cb.sid)
        type_ = alert_type.value
        for scope in alert_scopes(cb.entity):
            counts[(type_, scope)] += 1
            alert = wanted.get((type_, scope))
            if alert is not None and counts[(type_, scope)] == alert["threshold"]:
                alert["crossing_index"] = index


def alert_scopes(e: Entity) -> list[str]:
    """The scopes an entity's failures count in: its account, our number, its campaign."""
    scopes = [scope_key(ScopeType.ACCOUNT, e.account), scope_key(ScopeType.NUMBER, e.our_number)]
    if e.campaign:
        scopes.append(scope_key(ScopeType.CAMPAIGN, e.campaign))
    return scopes
