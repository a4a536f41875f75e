"""One simulated message, call, recording or transcription, and the callbacks it posts.

An `Entity` carries its planned outcome (status sequence, error code, duration, MOS);
a `Callback` is one of its steps, maybe a provider retry, maybe late, and renders the
form the provider posts for it.

Times are not generated: a voice or inbound `Timestamp` is rendered when the
callback is sent (`Callback.params(now)`), because faust windows drop event times
older than the wall clock allows.
"""

from __future__ import annotations

import math
from email.utils import formatdate

from contract.kinds import CallbackKind

SMS, VOICE, RECORDING, TRANSCRIPTION, INBOUND = (
    CallbackKind.SMS,
    CallbackKind.VOICE,
    CallbackKind.RECORDING,
    CallbackKind.TRANSCRIPTION,
    CallbackKind.INBOUND_CALL,
)

# A late (reordered) callback carries the provider's earlier event time.
LATE_S = 2.0

_SPACE = "https://sim.example.com/api/laml/2010-04-01/Accounts"


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
        "unreadable",
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
        # step -> (parameter, text): a typed value the provider sent as something else
        self.unreadable: dict[int, tuple[str, str]] = {}

    @property
    def final(self) -> str:
        return self.statuses[-1]

    @property
    def our_number(self) -> str:
        """From of outbound messages and calls, To of inbound calls."""
        return self.to if self.kind is INBOUND else self.from_


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

    @property
    def unreadable(self) -> tuple[str, str] | None:
        """The (parameter, text) this callback carries that cannot be read as its type."""
        return self.entity.unreadable.get(self.step)

    def params(self, now: float) -> dict[str, str]:
        """The form the provider posts; `now` stamps the event time of voice kinds."""
        form = _RENDER[self.entity.kind](self, now)
        spoiled = self.unreadable
        if spoiled is not None:
            form[spoiled[0]] = spoiled[1]
        return form


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
