"""The ground truth of simulated traffic: what a correct pipeline's reports must show.

Counted from where each entity ended (`Outcome`): per-campaign delivery counts, call
statistics, forwards, and the alerts the thresholds imply. `recount` counts it again
from the callbacks as a receiver sees them, duplicates and late ones included.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from contract.kinds import CallbackKind
from contract.statuses import advances
from simulate.alerts import Thresholds, add_crossings, expected_alerts
from simulate.callbacks import INBOUND, RECORDING, SMS, TRANSCRIPTION, VOICE, Callback, Entity

N = TypeVar("N", int, float)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where one entity ended: what the truth is counted from."""

    kind: CallbackKind
    sid: str
    campaign: str
    status: str
    number: str  # our number: From of outbound messages and calls, To of inbound calls
    error_code: str = ""
    num_media: int = 0
    duration: int = 0
    mos: float | None = None


@dataclass(frozen=True)
class GroundTruth:
    """What a correct pipeline reports for the generated traffic."""

    callbacks: int
    unique_callbacks: int
    duplicates: int
    reordered: int
    callbacks_by_kind: dict[str, int]
    unique_by_kind: dict[str, int]  # distinct callbacks: the rows each event table ends with
    campaigns: dict[str, dict[str, Any]]  # per campaign: delivery counts and calls
    messages: dict[str, Any]
    calls: dict[str, Any]
    inbound_calls: dict[str, Any]
    recordings: int  # completed recordings: one forward each
    transcriptions: int  # completed transcriptions: one forward each
    alerts: list[dict[str, Any]]
    scenario: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    # distinct final callbacks the provider never delivered (`--drop-final`), by kind; the figures
    # above are the provider's truth, which reconciliation restores. `callbacks` counts
    # them, and crossing indices are positions in the undropped order.
    withheld: dict[str, int] = field(default_factory=dict)

    def delivery_report(self, receipts_timed_out: bool = True) -> list[dict[str, Any]]:
        """The rows `switchboard report delivery` shows, by campaign.

        Messages stuck at sent are unconfirmed: MMS at once, SMS from carriers that send
        no receipt only once the receipt is overdue (`unconfirmed_after_s`); before that
        the report counts them as pending.
        """
        rows = []
        for campaign, c in sorted(self.campaigns.items()):
            if not c["messages"]:
                continue
            late = c["no_receipt"]
            rows.append(
                {
                    "campaign": campaign,
                    "messages": c["messages"],
                    "delivered": c["delivered"],
                    "undelivered": c["undelivered"],
                    "failed": c["failed"],
                    "unconfirmed": c["mms_unconfirmed"] + (late if receipts_timed_out else 0),
                    "pending": 0 if receipts_timed_out else late,
                    "delivery_rate": c["delivery_rate"],
                    "not_counted": 0,  # the simulator sends no canceled or inbound messages
                    "other": 0,
                }
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["delivery"] = self.delivery_report()
        return data


def _rate(part: int, whole: int) -> float | None:
    # ClickHouse's round(x, 4) on the same quotient: the report's delivery_rate
    return round(part / whole, 4) if whole else None


def _call_stats(outcomes: list[Outcome]) -> dict[str, Any]:
    by_status = Counter(o.status for o in outcomes)
    mos = [o.mos for o in outcomes if o.mos is not None]
    seconds = sum(o.duration for o in outcomes)
    return {
        "total": len(outcomes),
        "by_status": dict(sorted(by_status.items())),
        "seconds": seconds,
        "minutes": round(seconds / 60, 2),
        "mos_count": len(mos),
        "mos_mean": round(sum(mos) / len(mos), 4) if mos else None,
    }


def _delivery_counts(messages: list[Outcome]) -> dict[str, Any]:
    by_status = Counter(o.status for o in messages)
    delivered, undelivered, failed = (by_status[s] for s in ("delivered", "undelivered", "failed"))
    at_sent = [o for o in messages if o.status == "sent"]
    mms = sum(1 for o in at_sent if o.num_media > 0)
    return {
        "messages": len(messages),
        "delivered": delivered,
        "undelivered": undelivered,
        "failed": failed,
        "unconfirmed": len(at_sent),  # stopped at sent, MMS included
        "mms_unconfirmed": mms,
        "no_receipt": len(at_sent) - mms,
        "delivery_rate": _rate(delivered, delivered + undelivered + failed),
    }


def truth_from_outcomes(
    outcomes: Iterable[Outcome],
    *,
    callbacks: Sequence[Callback],
    account: str,
    thresholds: Thresholds,
) -> GroundTruth:
    outcomes = list(outcomes)
    by_kind: dict[CallbackKind, list[Outcome]] = defaultdict(list)
    by_campaign: dict[str, dict[CallbackKind, list[Outcome]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for o in outcomes:
        by_kind[o.kind].append(o)
        if o.campaign:
            by_campaign[o.campaign][o.kind].append(o)
    campaigns = {
        name: _delivery_counts(kinds[SMS]) | {"calls": _call_stats(kinds[VOICE])}
        for name, kinds in sorted(by_campaign.items())
    }
    messages = by_kind[SMS]
    errors = Counter(o.error_code for o in messages if o.error_code)
    alerts = expected_alerts(outcomes, account, thresholds)
    add_crossings(callbacks, alerts)
    return GroundTruth(
        callbacks=len(callbacks),
        unique_callbacks=sum(1 for cb in callbacks if not cb.duplicate),
        duplicates=sum(1 for cb in callbacks if cb.duplicate),
        reordered=sum(1 for cb in callbacks if cb.late and not cb.duplicate),
        callbacks_by_kind=_by_kind(callbacks),
        unique_by_kind=_by_kind([cb for cb in callbacks if not cb.duplicate]),
        campaigns=campaigns,
        messages=_delivery_counts(messages)
        | {
            "mms": sum(1 for o in messages if o.num_media > 0),
            "error_codes": dict(sorted(errors.items())),
        },
        calls=_call_stats(by_kind[VOICE]),
        inbound_calls=_call_stats(by_kind[INBOUND]),
        recordings=sum(1 for o in by_kind[RECORDING] if o.status == "completed"),
        transcriptions=sum(1 for o in by_kind[TRANSCRIPTION] if o.status == "completed"),
        alerts=alerts,
        thresholds=asdict(thresholds),
    )


def _by_kind(callbacks: Iterable[Callback]) -> dict[str, int]:
    return dict(sorted(Counter(cb.kind.value for cb in callbacks).items()))


def planned_outcome(e: Entity) -> Outcome:
    """An entity's outcome as planned by the generator, from the values that can be read:
    a duration or MOS its final callback sent unreadable is absent; its media count, when
    none of its callbacks sent it readable."""
    call = e.kind in (VOICE, INBOUND)
    final = len(e.statuses) - 1
    spoiled = e.unreadable.get(final, ("", ""))[0]
    completed = call and e.final == "completed"
    media_read = any(e.unreadable.get(step, ("", ""))[0] != "NumMedia" for step in range(final + 1))
    return Outcome(
        kind=e.kind,
        sid=e.sid,
        campaign=e.campaign,
        status=e.final,
        number=e.our_number,
        error_code=e.error_code,
        num_media=e.num_media if media_read else 0,
        duration=e.duration if completed and spoiled != "CallDuration" else 0,
        mos=float(e.mos) if completed and e.mos and spoiled != "AudioInMos" else None,
    )


def recount(callbacks: Sequence[Callback], account: str, thresholds: Thresholds) -> GroundTruth:
    """The truth recounted from the callbacks as a receiver sees them: forms in arrival
    order, duplicates and late ones included, state by status precedence."""
    latest: dict[str, tuple[str, dict[str, str], str]] = {}
    media: dict[str, int] = {}  # the most media any of a message's callbacks says
    for cb in callbacks:
        form = cb.params(0.0)
        sid = cb.sid
        media[sid] = max(media.get(sid, 0), _number(form.get("NumMedia"), int) or 0)
        status = _status(cb.kind, form)
        ranks = cb.kind.spec.ranks
        previous = latest.get(sid)
        if previous is None or advances(ranks, previous[0], status):
            latest[sid] = (status, form, cb.campaign)
    kinds = {cb.sid: cb.kind for cb in callbacks}
    outcomes = []
    for sid, (status, form, campaign) in latest.items():
        kind = kinds[sid]
        completed = status == "completed"
        outcomes.append(
            Outcome(
                kind=kind,
                sid=sid,
                campaign=campaign,
                status=status,
                number=form["To"] if kind is INBOUND else form.get("From", ""),
                error_code=form.get("ErrorCode", ""),
                num_media=media[sid],
                duration=(_number(form.get("CallDuration"), int) or 0) if completed else 0,
                mos=_number(form.get("AudioInMos"), float) if completed else None,
            )
        )
    return truth_from_outcomes(
        outcomes, callbacks=callbacks, account=account, thresholds=thresholds
    )


def _number(text: str | None, type_: type[N]) -> N | None:
    """A plain decimal number as a receiver reads it; None when absent or not one."""
    if not text or not text.replace(".", "", 1).isdigit():
        return None
    return type_(float(text)) if type_ is int else type_(text)


def _status(kind: CallbackKind, form: dict[str, str]) -> str:
    spec = kind.spec
    assert spec.status_param is not None
    return form[spec.status_param]
