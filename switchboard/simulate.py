"""A realistic campaign's callbacks and their ground truth: a pure, seeded generator.

`generate(Scenario(...))` returns every callback in the order a provider would send
them (status sequences, provider retries as byte-identical duplicates, callbacks
swapped out of order) and the `GroundTruth` that a correct pipeline must report:
per-campaign delivery counts, call statistics, forwards and the alerts that the
thresholds imply. The same seed gives the same callbacks, so tests and benchmarks
can build scenarios from it; `switchboard.sender` posts them to an edge.

Times are not generated: a voice or inbound `Timestamp` is rendered when the
callback is sent (`Callback.params(now)`), because faust windows drop event times
older than the wall clock allows.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from email.utils import formatdate
from typing import Any

from contract.alerts import AlertType, scope_key
from contract.kinds import CallbackKind
from contract.settings import Settings
from contract.statuses import SMS_FAILED, advances

SMS, VOICE, RECORDING, TRANSCRIPTION, INBOUND = (
    CallbackKind.SMS,
    CallbackKind.VOICE,
    CallbackKind.RECORDING,
    CallbackKind.TRANSCRIPTION,
    CallbackKind.INBOUND_CALL,
)

# A late (reordered) callback carries the provider's earlier event time.
LATE_S = 2.0
# Entities whose callbacks (with duplicates) could overrun the exact callback budget
# are not started once fewer than this many remain; single-callback ones fill the rest.
_MAX_ENTITY_CALLBACKS = 16

# Error codes by final status, weighted as a campaign on US carriers sees them.
UNDELIVERED_CODES: dict[str, float] = {
    "30003": 0.30,  # unreachable handset
    "30005": 0.18,  # unknown handset
    "30006": 0.14,  # landline or unreachable carrier
    "30007": 0.14,  # carrier filtered
    "30004": 0.08,  # blocked
    "30008": 0.08,  # unknown error
    "30027": 0.08,  # T-Mobile daily cap
}
FAILED_CODES: dict[str, float] = {
    "21610": 0.35,  # recipient opted out
    "30008": 0.25,  # unknown error
    "30022": 0.20,  # 10DLC rate limit
    "30007": 0.10,  # carrier filtered
    "30006": 0.10,  # landline or unreachable carrier
}

_BODIES = (
    "{name}: 20% off everything this weekend. Reply STOP to opt out.",
    "{name}: your order has shipped and arrives Thursday. Reply STOP to opt out.",
    "{name}: reminder, your appointment is tomorrow at 10:30. Reply C to confirm or STOP "
    "to opt out. Call us if you need to reschedule; we are open every day from 8 to 6.",
    "{name}: you have 1,250 points waiting. Redeem them before the end of the month at "
    "our store or online. Reply STOP to opt out.",
)
_TRANSCRIPTS = (
    "Hi, this is Dana, please call me back about my order.",
    "Hello, I'd like to reschedule my appointment to next week if possible.",
    "This is a message for the billing team, my invoice number is 4471.",
    "Hey, just confirming the delivery window for tomorrow, thanks.",
)
_SPACE = "https://sim.example.com/api/laml/2010-04-01/Accounts"


@dataclass(frozen=True, slots=True)
class SmsMix:
    """Final outcome of an SMS (MMS always stops at sent): shares, normalized on use."""

    delivered: float = 0.86
    undelivered: float = 0.05
    failed: float = 0.03
    no_receipt: float = 0.06  # the carrier never sends a delivery receipt: stops at sent


@dataclass(frozen=True, slots=True)
class CallMix:
    completed: float = 0.72
    busy: float = 0.09
    no_answer: float = 0.11
    failed: float = 0.06
    canceled: float = 0.02


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


@dataclass(frozen=True, slots=True)
class Scenario:
    """What to generate. `callbacks` is exact: duplicates included."""

    callbacks: int = 10_000
    seed: int = 0
    campaigns: tuple[str, ...] = ("spring-sale", "loyalty", "reminders")
    sequential_campaigns: bool = False  # campaigns one after another instead of interleaved
    # shares of entities (messages, outbound calls, inbound calls); normalized on use
    sms_share: float = 0.80
    voice_share: float = 0.10
    inbound_share: float = 0.10
    mms_rate: float = 0.05
    sms_mix: SmsMix = field(default_factory=SmsMix)
    call_mix: CallMix = field(default_factory=CallMix)
    recording_rate: float = 0.30  # completed outbound calls that leave a recording
    transcription_rate: float = 0.50  # recordings that are transcribed
    inbound_failed_rate: float = 0.08
    poor_audio_rate: float = 0.15  # calls whose MOS comes from the poor-quality mode
    duplicate_rate: float = 0.0  # provider retries: a callback sent again, byte for byte
    reorder_rate: float = 0.0  # a callback swapped behind its entity's next one
    numbers_per_campaign: int = 4
    account_sid: str = "AC" + "5ca1ab1e" * 4


class Entity:
    """One message, call, recording or transcription, with its planned outcome."""

    __slots__ = (
        "kind",
        "sid",
        "campaign",
        "from_",
        "to",
        "statuses",
        "error_code",
        "num_media",
        "body",
        "duration",
        "mos",
        "parent",
        "account",
    )

    def __init__(
        self, kind: CallbackKind, sid: str, campaign: str, from_: str, to: str, account: str
    ) -> None:
        self.kind = kind
        self.account = account
        self.sid = sid
        self.campaign = campaign
        self.from_ = from_
        self.to = to
        self.statuses: tuple[str, ...] = ()
        self.error_code = ""
        self.num_media = 0
        self.body = ""
        self.duration = 0
        self.mos = ""  # as the provider sends it: a string, empty when absent
        self.parent: Entity | None = None

    @property
    def final(self) -> str:
        return self.statuses[-1]


class Callback:
    """One POST the provider makes: an entity's step, maybe a retry, maybe late."""

    __slots__ = ("entity", "step", "duplicate", "late")

    def __init__(self, entity: Entity, step: int, duplicate: bool, late: bool) -> None:
        self.entity = entity
        self.step = step
        self.duplicate = duplicate
        self.late = late

    @property
    def kind(self) -> CallbackKind:
        return self.entity.kind

    @property
    def sid(self) -> str:
        return self.entity.sid

    @property
    def status(self) -> str:
        return self.entity.statuses[self.step]

    @property
    def campaign(self) -> str:
        return self.entity.campaign

    @property
    def key(self) -> tuple[str, int]:
        """Identifies the callback a duplicate repeats."""
        return (self.entity.sid, self.step)

    def params(self, now: float) -> dict[str, str]:
        """The form the provider posts; `now` stamps the event time of voice kinds."""
        return _RENDER[self.entity.kind](self, now)


def _render_sms(cb: Callback, now: float) -> dict[str, str]:
    e = cb.entity
    params = {
        "MessageSid": e.sid,
        "MessageStatus": e.statuses[cb.step],
        "AccountSid": e.account,
        "From": e.from_,
        "To": e.to,
        "Body": e.body,
        "NumMedia": str(e.num_media),
        "NumSegments": str(_segments(e.body)),
    }
    if e.error_code and cb.step == len(e.statuses) - 1:
        params["ErrorCode"] = e.error_code
    return params


def _timestamp(cb: Callback, now: float) -> str:
    return formatdate(now - LATE_S if cb.late else now, usegmt=True)


def _render_voice(cb: Callback, now: float) -> dict[str, str]:
    e = cb.entity
    status = e.statuses[cb.step]
    return {
        "CallSid": e.sid,
        "AccountSid": e.account,
        "From": e.from_,
        "To": e.to,
        "CallStatus": status,
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
        "CallbackSource": "call-progress-events",
        "Timestamp": _timestamp(cb, now),
        "SequenceNumber": str(cb.step),
    } | _call_outcome(e, status)


def _render_recording(cb: Callback, now: float) -> dict[str, str]:
    e = cb.entity
    assert e.parent is not None
    return {
        "AccountSid": e.account,
        "CallSid": e.parent.sid,
        "RecordingSid": e.sid,
        "RecordingUrl": _recording_url(e),
        "RecordingStatus": e.statuses[cb.step],
        "RecordingDuration": str(e.duration),
        "RecordingChannels": "1",
        "RecordingSource": "RecordVerb",
    }


def _render_transcription(cb: Callback, now: float) -> dict[str, str]:
    e = cb.entity
    recording = e.parent
    assert recording is not None and recording.parent is not None
    call = recording.parent
    return {
        "TranscriptionSid": e.sid,
        "TranscriptionText": e.body,
        "TranscriptionStatus": e.statuses[cb.step],
        "TranscriptionUrl": f"{_SPACE}/{e.account}/Transcriptions/{e.sid}",
        "RecordingSid": recording.sid,
        "RecordingUrl": _recording_url(recording),
        "AccountSid": e.account,
        "CallSid": call.sid,
        "From": call.to,  # the caller who left the voicemail
        "To": call.from_,
    }


def _render_inbound(cb: Callback, now: float) -> dict[str, str]:
    e = cb.entity
    status = e.statuses[cb.step]
    return {
        "CallSid": e.sid,
        "AccountSid": e.account,
        "From": e.from_,
        "To": e.to,
        "Timestamp": _timestamp(cb, now),
        "CallStatus": status,
    } | _call_outcome(e, status)


def _call_outcome(e: Entity, status: str) -> dict[str, str]:
    """A call's duration and MOS, outbound or inbound: the provider's doc has CallDuration
    "only present on the completed event", and a call that never connected has no audio
    to score."""
    if status != "completed":
        return {}
    return {"CallDuration": str(e.duration), "AudioInMos": e.mos}


_RENDER = {
    SMS: _render_sms,
    VOICE: _render_voice,
    RECORDING: _render_recording,
    TRANSCRIPTION: _render_transcription,
    INBOUND: _render_inbound,
}


def _recording_url(e: Entity) -> str:
    return f"{_SPACE}/{e.account}/Recordings/{e.sid}"


def _segments(body: str) -> int:
    return 1 if len(body) <= 160 else math.ceil(len(body) / 153)


# --- the ground truth -------------------------------------------------------------


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


def _alerts(outcomes: list[Outcome], account: str, th: Thresholds) -> list[dict[str, Any]]:
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
            scope_key("account", account),
            scope_key("campaign", o.campaign) if o.campaign else None,
            scope_key("number", o.number),
        ):
            if scope:
                scopes[scope].append(o)
    alerts: list[dict[str, Any]] = []
    for scope, group in sorted(scopes.items()):
        messages = [o for o in group if o.kind is SMS]
        calls = [o for o in group if o.kind in (VOICE, INBOUND)]
        sms_failures = sum(1 for o in messages if o.status in SMS_FAILED)
        sms_volume = sum(1 for o in messages if o.status in ("delivered", *SMS_FAILED))
        call_failures = sum(1 for o in calls if o.status == "failed")
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
    if e.kind in (VOICE, INBOUND) and e.final == "failed":
        return AlertType.CALL_FAILURES
    return None


def _crossings(callbacks: Sequence[Callback], alerts: list[dict[str, Any]]) -> None:
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
    scopes = [scope_key("account", e.account), scope_key("number", _our_number(e))]
    if e.campaign:
        scopes.append(scope_key("campaign", e.campaign))
    return scopes


def _our_number(e: Entity) -> str:
    return e.to if e.kind is INBOUND else e.from_


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
    alerts = _alerts(outcomes, account, thresholds)
    _crossings(callbacks, alerts)
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
    """An entity's outcome as planned by the generator."""
    call = e.kind in (VOICE, INBOUND)
    return Outcome(
        kind=e.kind,
        sid=e.sid,
        campaign=e.campaign,
        status=e.final,
        number=_our_number(e),
        error_code=e.error_code,
        num_media=e.num_media,
        duration=e.duration if call and e.final == "completed" else 0,
        mos=float(e.mos) if call and e.mos and e.final == "completed" else None,
    )


def recount(callbacks: Sequence[Callback], account: str, thresholds: Thresholds) -> GroundTruth:
    """The truth recounted from the callbacks as a receiver sees them: forms in arrival
    order, duplicates and late ones included, state by status precedence."""
    latest: dict[str, tuple[str, dict[str, str], str]] = {}
    for cb in callbacks:
        form = cb.params(0.0)
        sid = cb.sid
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
                num_media=int(form.get("NumMedia") or 0),
                duration=int(form.get("CallDuration") or 0) if completed else 0,
                mos=float(form["AudioInMos"]) if completed and form.get("AudioInMos") else None,
            )
        )
    return truth_from_outcomes(
        outcomes, callbacks=callbacks, account=account, thresholds=thresholds
    )


def _status(kind: CallbackKind, form: dict[str, str]) -> str:
    spec = kind.spec
    assert spec.status_param is not None
    return form[spec.status_param]


# --- the generator ------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    scenario: Scenario
    thresholds: Thresholds
    callbacks: list[Callback]  # in the order the provider sends them
    truth: GroundTruth


class _Weighted:
    """A weighted choice with its cumulative weights computed once (a hot path)."""

    def __init__(self, weights: dict[Any, float]) -> None:
        self.items = list(weights)
        self.cum = list(itertools.accumulate(weights.values()))

    def pick(self, rng: random.Random) -> Any:
        return rng.choices(self.items, cum_weights=self.cum)[0]


_UNDELIVERED = _Weighted(UNDELIVERED_CODES)
_FAILED = _Weighted(FAILED_CODES)


class _Builder:
    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        self.rng = random.Random(scenario.seed)
        self.tag = f"{scenario.seed & 0xFFFFFFFF:08x}"
        self.count = 0
        self.numbers = {
            c: [f"+1555{200 + i % 800:03d}{n:04d}" for n in range(scenario.numbers_per_campaign)]
            for i, c in enumerate(scenario.campaigns)
        }
        self.lines = [f"+1555010{n:04d}" for n in range(max(1, scenario.numbers_per_campaign))]
        sms = asdict(scenario.sms_mix)
        self.sms_mix = _Weighted(
            {("sent" if k == "no_receipt" else k): v for k, v in sms.items() if v > 0}
        )
        self.call_mix = _Weighted(
            {k.replace("_", "-"): v for k, v in asdict(scenario.call_mix).items() if v}
        )
        shares = {
            SMS: scenario.sms_share,
            VOICE: scenario.voice_share,
            INBOUND: scenario.inbound_share,
        }
        self.shares = _Weighted({k: v for k, v in shares.items() if v > 0})
        if not self.shares.items:
            raise ValueError("at least one of sms_share, voice_share, inbound_share must be > 0")

    def new(self, kind: CallbackKind, prefix: str, campaign: str, from_: str, to: str) -> Entity:
        self.count += 1
        sid = f"{prefix}{self.tag}{self.count:024x}"
        return Entity(kind, sid, campaign, from_, to, self.s.account_sid)

    def customer(self) -> str:
        return f"+1{self.rng.randrange(2_002_000_000, 9_899_999_999)}"

    def campaign(self, position: float) -> str:
        if self.s.sequential_campaigns:
            return self.s.campaigns[
                min(int(position * len(self.s.campaigns)), len(self.s.campaigns) - 1)
            ]
        return self.rng.choice(self.s.campaigns)

    def kind(self) -> CallbackKind:
        kind: CallbackKind = self.shares.pick(self.rng)
        return kind

    def mos(self) -> str:
        rng = self.rng
        value = (
            rng.gauss(2.9, 0.4) if rng.random() < self.s.poor_audio_rate else rng.gauss(4.3, 0.2)
        )
        return f"{min(4.5, max(1.0, value)):.2f}"

    def duration(self) -> int:
        return max(1, int(self.rng.lognormvariate(math.log(90), 0.8)))

    def sms(self, campaign: str, single: bool) -> Entity:
        rng = self.rng
        e = self.new(SMS, "SM", campaign, rng.choice(self.numbers[campaign]), self.customer())
        e.body = rng.choice(_BODIES).format(name=campaign.replace("-", " ").title())
        if rng.random() < self.s.mms_rate:
            e.num_media = rng.randint(1, 3)
            final = "sent"  # no delivery receipts for MMS
        else:
            final = self.sms_mix.pick(rng)
        if final == "undelivered":
            e.error_code = _UNDELIVERED.pick(rng)
        elif final == "failed":
            e.error_code = _FAILED.pick(rng)
        if single:
            e.statuses = (final,)
        elif final == "failed":
            e.statuses = ("queued", "sending", "failed")
        elif final == "sent":
            e.statuses = ("queued", "sending", "sent")
        else:
            e.statuses = ("queued", "sending", "sent", final)
        return e

    def voice(self, campaign: str, single: bool) -> Entity:
        rng = self.rng
        e = self.new(VOICE, "CA", campaign, rng.choice(self.numbers[campaign]), self.customer())
        final = self.call_mix.pick(rng)
        progress = {
            "completed": ("initiated", "ringing", "in-progress", "completed"),
            "busy": ("initiated", "ringing", "busy"),
            "no-answer": ("initiated", "ringing", "no-answer"),
            "canceled": ("initiated", "ringing", "canceled"),
            "failed": ("initiated", "failed"),
        }[final]
        e.statuses = (final,) if single else progress
        if final == "completed":
            e.duration = self.duration()
            e.mos = self.mos()
        return e

    def recording(self, call: Entity) -> Entity:
        e = self.new(RECORDING, "RE", call.campaign, call.from_, call.to)
        e.parent = call
        e.duration = max(1, min(call.duration, int(self.rng.uniform(5, 60))))
        e.statuses = ("completed",)
        return e

    def transcription(self, recording: Entity) -> Entity:
        e = self.new(TRANSCRIPTION, "TR", recording.campaign, recording.from_, recording.to)
        e.parent = recording
        e.body = self.rng.choice(_TRANSCRIPTS)
        e.statuses = ("completed",)
        return e

    def inbound(self) -> Entity:
        rng = self.rng
        e = self.new(INBOUND, "CA", "", self.customer(), rng.choice(self.lines))
        if rng.random() < self.s.inbound_failed_rate:
            e.statuses = ("failed",)
            e.duration = 0
        else:
            e.statuses = ("completed",)
            e.duration = self.duration()
            e.mos = self.mos()
        return e

    def entity(self, position: float, single: bool) -> list[Entity]:
        """One entity and what it leaves behind (a call's recording and transcription)."""
        kind = self.kind()
        if kind is INBOUND:
            return [self.inbound()]
        campaign = self.campaign(position)
        if kind is SMS:
            return [self.sms(campaign, single)]
        call = self.voice(campaign, single)
        made = [call]
        if not single and call.final == "completed" and self.rng.random() < self.s.recording_rate:
            made.append(self.recording(call))
            if self.rng.random() < self.s.transcription_rate:
                made.append(self.transcription(made[-1]))
        return made


def generate(scenario: Scenario, thresholds: Thresholds | None = None) -> Traffic:
    """Every callback of the scenario in send order, and the truth they add up to."""
    thresholds = thresholds or Thresholds()
    b = _Builder(scenario)
    rng = b.rng
    budget = scenario.callbacks
    mean_gap = min(500.0, max(2.0, budget * 0.001))  # positions between an entity's callbacks
    # (sort key, callback); keys place each entity's callbacks along the stream
    placed: list[tuple[float, Callback]] = []
    entities: list[Entity] = []
    while budget - len(placed) > 0:
        remaining = budget - len(placed)
        single = remaining < _MAX_ENTITY_CALLBACKS
        position = rng.random()
        start = position * budget
        group = b.entity(position, single)
        for entity in group:
            entities.append(entity)
            keys = []
            for _ in entity.statuses:
                keys.append(start)
                start += 1.0 + rng.expovariate(1.0 / mean_gap)
            calls = [Callback(entity, step, False, False) for step in range(len(keys))]
            if not single:
                # reordering: a callback overtaken by its entity's next one arrives late
                for i in range(1, len(keys)):
                    if rng.random() < scenario.reorder_rate:
                        keys[i - 1], keys[i] = keys[i], keys[i - 1]
                        calls[i - 1].late = True
            placed.extend(zip(keys, calls, strict=True))
            if not single:
                for key, cb in zip(keys, calls, strict=True):
                    if rng.random() < scenario.duplicate_rate:
                        retry_key = key + 1.0 + rng.expovariate(1.0 / (2 * mean_gap))
                        placed.append((retry_key, Callback(entity, cb.step, True, cb.late)))
            if single:
                break  # a filler entity leaves nothing behind
    placed.sort(key=lambda pair: pair[0])
    callbacks = [cb for _, cb in placed]
    truth = truth_from_outcomes(
        (planned_outcome(e) for e in entities),
        callbacks=callbacks,
        account=scenario.account_sid,
        thresholds=thresholds,
    )
    truth = replace(truth, scenario=_scenario_dict(scenario))
    return Traffic(scenario=scenario, thresholds=thresholds, callbacks=callbacks, truth=truth)


def _scenario_dict(scenario: Scenario) -> dict[str, Any]:
    data = asdict(scenario)
    data["campaigns"] = list(scenario.campaigns)
    return data
