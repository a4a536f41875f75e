"""Per-SID state: the latest status by precedence, and what each real change counts.

Pure functions over normalized `Event`s. A duplicate, or a late status that ranks
at or below the one the SID has reached, returns None: it changes nothing and
counts nothing. Each real transition is returned exactly once, with the window
increments it causes (`Count`) and the scopes they count toward.

What a transition counts (`contract.windows.DeliveryCounts` and `CallCounts`):
- SMS `sent`: sent +1 and, until a receipt arrives, pending +1 (mms +1 for MMS,
  which never gets one). A receipt (delivered, undelivered, failed) takes the
  pending or mms count back at the time it was sent. A message whose first
  callback is already delivered or undelivered also counts as sent: its `sent`
  callback is late or lost. Failed messages never left SignalWire.
- Calls (voice and inbound-call share a CallSid's state, so a call reported by
  both counts once): the first final status counts the call, its end state
  (the seed's split: completed/canceled/no-answer/busy ended, failed failed),
  its CallDuration and its AudioInMos.
- Recordings and transcriptions count nothing; their first completed status is
  what the forwarder acts on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from contract import jsonbytes
from contract.alerts import ScopeType, scope_key
from contract.events import Event
from contract.kinds import CallbackKind
from contract.statuses import (
    SMS_DELIVERED,
    SMS_FAILED_ONLY,
    SMS_FINAL,
    SMS_UNDELIVERED,
    advances,
    final,
)
from contract.windows import CallCounts, DeliveryCounts


class Family(StrEnum):
    DELIVERY = "delivery"  # SMS: DeliveryWindow on metrics.delivery
    CALLS = "calls"  # voice and inbound-call: CallWindow on metrics.calls


FAMILY: dict[CallbackKind, Family] = {
    CallbackKind.SMS: Family.DELIVERY,
    CallbackKind.VOICE: Family.CALLS,
    CallbackKind.INBOUND_CALL: Family.CALLS,
}

_KEY_PREFIX: dict[CallbackKind, str] = {
    CallbackKind.SMS: "m",
    CallbackKind.VOICE: "c",
    CallbackKind.INBOUND_CALL: "c",  # the same call as its voice callbacks
    CallbackKind.RECORDING: "r",
    CallbackKind.TRANSCRIPTION: "t",
}

SENT = "sent"
_RECEIPT_FIELD = (
    dict.fromkeys(SMS_DELIVERED, DeliveryCounts.DELIVERED)
    | dict.fromkeys(SMS_UNDELIVERED, DeliveryCounts.UNDELIVERED)
    | dict.fromkeys(SMS_FAILED_ONLY, DeliveryCounts.FAILED)
)
_CALL_FIELD = {
    "completed": CallCounts.COMPLETED,
    "failed": CallCounts.FAILED,
    "busy": CallCounts.BUSY,
    "no-answer": CallCounts.NO_ANSWER,
    "canceled": CallCounts.CANCELED,
}


_FINAL: dict[str, frozenset[str]] = {
    prefix: final(kind.spec.ranks) for kind, prefix in _KEY_PREFIX.items()
}


def state_key(kind: CallbackKind, sid: str) -> str:
    return f"{_KEY_PREFIX[kind]}:{sid}"


def is_final(key: str, state: SidState) -> bool:
    return state.status in _FINAL.get(key.partition(":")[0], frozenset())


@dataclass(frozen=True, slots=True)
class SidState:
    status: str
    received_at: float  # edge time of the change; the state expires `state_ttl_s` after it
    sent_at: float | None = None  # SMS at `sent`: the event time it was counted as pending
    mms: bool = False  # that pending message has media, so it is counted as mms instead


@dataclass(frozen=True, slots=True)
class Count:
    at: float  # the event time whose windows the increments belong to
    deltas: dict[str, float]  # window field -> increment


@dataclass(frozen=True, slots=True)
class Transition:
    kind: CallbackKind
    sid: str
    previous: str | None
    state: SidState
    event_time: float
    counts: tuple[Count, ...] = ()
    # the callback URL's query tags (campaign): a status the reconcile stage reads from
    # the REST API, which knows nothing of them, is published with these
    tags: dict[str, str] = field(default_factory=dict)
    number: str | None = None  # our number (From, or To of inbound): reconcile lists by it

    @property
    def key(self) -> str:
        return state_key(self.kind, self.sid)

    @property
    def status(self) -> str:
        return self.state.status

    def record(self) -> bytes:
        """The status-change record on processors.sid-state (its latest per key is the state).
        Held until the batch's outputs are acknowledged: an exact-size copy (`jsonbytes`)."""
        return jsonbytes.dumps(
            {
                "kind": self.kind.value,
                "sid": self.sid,
                "status": self.state.status,
                "previous": self.previous,
                "event_time": self.event_time,
                "received_at": self.state.received_at,
                "sent_at": self.state.sent_at,
                "mms": self.state.mms,
                "tags": self.tags,
                "number": self.number,
            }
        )


def state_from_record(raw: bytes) -> SidState:
    data: dict[str, Any] = orjson.loads(raw)
    return SidState(data["status"], data["received_at"], data["sent_at"], data["mms"])


def step(previous: SidState | None, event: Event) -> Transition | None:
    """The transition this callback makes, or None for a duplicate or a late lower status."""
    status = event.status
    if status is None:
        return None
    before = previous.status if previous else None
    if not advances(event.kind.spec.ranks, before, status):
        return None
    sent_at: float | None = None
    mms = False
    counts: tuple[Count, ...] = ()
    family = FAMILY.get(event.kind)
    if family is Family.DELIVERY:
        counts, sent_at, mms = _delivery_counts(previous, status, event)
    elif family is Family.CALLS:
        counts = _call_counts(status, event)
    return Transition(
        kind=event.kind,
        sid=event.sid,
        previous=before,
        state=SidState(status, event.received_at, sent_at, mms),
        event_time=event.event_time,
        counts=counts,
        tags=event.tags,
        number=our_number(event) if family is not None else None,
    )


def _delivery_counts(
    previous: SidState | None, status: str, event: Event
) -> tuple[tuple[Count, ...], float | None, bool]:
    at = event.event_time
    if status == SENT:
        mms = (event.get("num_media") or 0) > 0
        counted = DeliveryCounts.MMS if mms else DeliveryCounts.PENDING
        return (Count(at, {DeliveryCounts.SENT: 1, counted: 1}),), at, mms
    counts = []
    pending = previous is not None and previous.status == SENT and previous.sent_at is not None
    field = _RECEIPT_FIELD.get(status)
    if field is not None:
        deltas: dict[str, float] = {field: 1}
        if not pending and field != DeliveryCounts.FAILED:
            deltas[DeliveryCounts.SENT] = 1
        counts.append(Count(at, deltas))
    if pending and status in SMS_FINAL:
        assert previous is not None and previous.sent_at is not None
        counted = DeliveryCounts.MMS if previous.mms else DeliveryCounts.PENDING
        counts.append(Count(previous.sent_at, {counted: -1}))
    return tuple(counts), None, False


def _call_counts(status: str, event: Event) -> tuple[Count, ...]:
    field = _CALL_FIELD.get(status)
    if field is None:
        return ()
    deltas: dict[str, float] = {CallCounts.CALLS: 1, field: 1}
    duration = event.get("call_duration")
    if duration:
        deltas[CallCounts.DURATION_S] = duration
    mos = event.get("audio_in_mos")
    if mos is not None:
        deltas[CallCounts.MOS_COUNT] = 1
        deltas[CallCounts.MOS_SUM] = mos
    return (Count(event.event_time, deltas),)


def our_number(event: Event) -> str | None:
    """Our side of the message or call: From for what we send or dial, To for inbound calls."""
    direction = str(event.get("direction") or "")
    inbound = event.kind is CallbackKind.INBOUND_CALL or direction.startswith("inbound")
    number: str | None = event.get("to" if inbound else "from")  # both are str columns
    return number


# The scope keys' prefixes, made once: an enum member costs the intake 0.1 µs to look up
# and as much again to format, three times a callback.
_ACCOUNT, _NUMBER, _CAMPAIGN = (
    scope_key(t, "") for t in (ScopeType.ACCOUNT, ScopeType.NUMBER, ScopeType.CAMPAIGN)
)


def scopes(event: Event) -> tuple[str, ...]:
    """The scopes a callback counts toward: its account, our number, its campaign tag."""
    found = []
    if account := event.get("account_sid"):
        found.append(_ACCOUNT + account)
    if number := our_number(event):
        found.append(_NUMBER + number)
    if event.campaign:
        found.append(_CAMPAIGN + event.campaign)
    return tuple(found)
