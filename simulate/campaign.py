"""A realistic campaign's callbacks and their ground truth: a pure, seeded generator.

`generate(Scenario(...))` returns every callback in the order a provider would send
them (status sequences, provider retries as byte-identical duplicates, callbacks
swapped out of order) and the `GroundTruth` (`simulate.truth`) that a correct pipeline
must report. The same seed gives the same callbacks, so tests and benchmarks can build
scenarios from it; `simulate.sender` posts them to an edge.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from contract.kinds import CallbackKind, ParamType
from simulate.alerts import Thresholds
from simulate.callbacks import INBOUND, RECORDING, SMS, TRANSCRIPTION, VOICE, Callback, Entity
from simulate.truth import GroundTruth, planned_outcome, truth_from_outcomes

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
    # distinct callbacks with one typed value that is not one (AudioInMos N/A, a Timestamp
    # of a 13th month, a CallDuration of 12s), as a provider that changed its habits sends them
    unreadable_rate: float = 0.0
    # messages and calls whose final callback (and its retries) the provider never
    # delivers, though it knows the status (reconcile/ finds it through the REST API).
    # Only entities heard of before (more than one callback) lose theirs.
    drop_final_rate: float = 0.0
    numbers_per_campaign: int = 4
    account_sid: str = "AC" + "5ca1ab1e" * 4
    # Another namespace, same callbacks: its SIDs and numbers differ (the same campaign
    # sent in several formats side by side, each with its own campaigns and account).
    namespace: int = 0


@dataclass(frozen=True)
class Traffic:
    scenario: Scenario
    thresholds: Thresholds
    callbacks: list[Callback]  # in the order the provider sends them
    truth: GroundTruth
    withheld: list[Callback] = field(default_factory=list)  # never delivered (drop_final_rate)


class _Weighted:
    """A weighted choice with its cumulative weights computed once (a hot path)."""

    def __init__(self, weights: dict[Any, float]) -> None:
        self.items = list(weights)
        self.cum = list(itertools.accumulate(weights.values()))

    def pick(self, rng: random.Random) -> Any:
        return rng.choices(self.items, cum_weights=self.cum)[0]


_UNDELIVERED = _Weighted(UNDELIVERED_CODES)
_FAILED = _Weighted(FAILED_CODES)

# What providers have sent in typed parameters (RFC 2822 times, numbers) that is not one.
UNREADABLE_TEXTS: dict[ParamType, tuple[str, ...]] = {
    ParamType.INT: ("N/A", "12s", "two", "1e400"),
    ParamType.FLOAT: ("N/A", "nan", "4,2"),
    ParamType.TIMESTAMP: ("yesterday", "2025-13-01T12:00:00Z", "Mon, 32 Foo 2025 25:00:00"),
}


class _Builder:
    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        self.rng = random.Random(scenario.seed)
        ns = scenario.namespace
        self.tag = (
            f"{scenario.seed & 0xFFFFFFFF:08x}"
            if not ns
            else f"{ns:04x}{scenario.seed & 0xFFFF:04x}"
        )
        self.count = 0
        first = ns * len(scenario.campaigns)
        self.numbers = {
            c: [
                f"+1555{200 + (first + i) % 800:03d}{n:04d}"
                for n in range(scenario.numbers_per_campaign)
            ]
            for i, c in enumerate(scenario.campaigns)
        }
        self.lines = [
            f"+15550{10 + ns % 90:02d}{n:04d}" for n in range(max(1, scenario.numbers_per_campaign))
        ]
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
    if scenario.unreadable_rate > 0:
        _spoil(callbacks, scenario)
    truth = truth_from_outcomes(
        (planned_outcome(e) for e in entities),
        callbacks=callbacks,
        account=scenario.account_sid,
        thresholds=thresholds,
    )
    withheld: list[Callback] = []
    if scenario.drop_final_rate > 0:
        callbacks, withheld = _withhold_finals(callbacks, scenario)
    by_kind = dict(sorted(Counter(cb.kind.value for cb in withheld if not cb.duplicate).items()))
    truth = replace(truth, scenario=_scenario_dict(scenario), withheld=by_kind)
    return Traffic(scenario, thresholds, callbacks, truth, withheld)


def _withhold_finals(
    callbacks: list[Callback], scenario: Scenario
) -> tuple[list[Callback], list[Callback]]:
    """Drops the final callback (retries included) of `drop_final_rate` of the messages
    and calls that reach a final status after an earlier callback. Its own random
    stream: the callbacks that are sent are those of the same scenario without drops."""
    rng = random.Random(f"drop-final-{scenario.seed}")
    entities = {cb.sid: cb.entity for cb in callbacks}.values()
    eligible = sorted(
        e.sid
        for e in entities
        if e.kind in (SMS, VOICE, INBOUND)
        and len(e.statuses) > 1
        and e.kind.spec.ranks.get(e.final) == max(e.kind.spec.ranks.values())
    )
    dropped = set(rng.sample(eligible, round(scenario.drop_final_rate * len(eligible))))
    kept: list[Callback] = []
    withheld: list[Callback] = []
    for cb in callbacks:
        final = cb.sid in dropped and cb.step == len(cb.entity.statuses) - 1
        (withheld if final else kept).append(cb)
    return kept, withheld


def _spoil(callbacks: list[Callback], scenario: Scenario) -> None:
    """Gives `unreadable_rate` of the distinct callbacks one unreadable typed value (a
    retry repeats it, byte for byte). Its own random stream: a scenario without them
    generates the same callbacks as before they existed."""
    rng = random.Random(f"unreadable-{scenario.seed}")
    distinct = [cb for cb in callbacks if not cb.duplicate]
    typed = {
        kind: {p.name: p.type for p in kind.spec.params if p.type is not ParamType.TEXT}
        for kind in CallbackKind
    }
    eligible = [
        (cb, names)
        for cb in distinct
        if (names := sorted(typed[cb.kind].keys() & cb.params(0.0).keys()))
    ]
    count = min(len(eligible), round(scenario.unreadable_rate * len(distinct)))
    for cb, names in rng.sample(eligible, count):
        name = rng.choice(names)
        cb.entity.unreadable[cb.step] = (name, rng.choice(UNREADABLE_TEXTS[typed[cb.kind][name]]))


def _scenario_dict(scenario: Scenario) -> dict[str, Any]:
    data = asdict(scenario)
    data["campaigns"] = list(scenario.campaigns)
    return data
