"""Raw callbacks as the edge would record them, for the processor tests and scenarios."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import format_datetime

from contract.envelope import Envelope, SignatureVerdict
from contract.events import Event
from contract.kinds import CallbackKind
from contract.normalize import normalize

ACCOUNT = "AC00000000000000000000000000000001"


def envelope(
    kind: CallbackKind,
    params: dict[str, str],
    *,
    at: float | None = None,
    campaign: str | None = None,
) -> Envelope:
    return Envelope(
        kind=kind,
        sid=params[kind.spec.sid_param],
        params=params,
        received_at=time.time() if at is None else at,
        signature=SignatureVerdict.UNCHECKED,
        tags={"campaign": campaign} if campaign else {},
    )


def sms(
    sid: str,
    status: str,
    *,
    at: float | None = None,
    campaign: str | None = None,
    from_: str = "+15550001111",
    media: int = 0,
    error: str = "",
) -> Envelope:
    params = {
        "MessageSid": sid,
        "MessageStatus": status,
        "ErrorCode": error,
        "AccountSid": ACCOUNT,
        "From": from_,
        "To": "+15557654321",
        "Body": "Spring sale: 20% off, reply STOP to opt out",
        "NumMedia": str(media),
        "NumSegments": "1",
    }
    return envelope(CallbackKind.SMS, params, at=at, campaign=campaign)


def rfc2822(at: float) -> str:
    return format_datetime(datetime.fromtimestamp(at, UTC))


def call(
    sid: str,
    status: str,
    *,
    at: float,
    kind: CallbackKind = CallbackKind.VOICE,
    from_: str = "+15550001111",
    to: str = "+15557654321",
    direction: str = "outbound-api",
    duration: int | None = None,
    mos: float | None = None,
    sequence: int | None = None,
    campaign: str | None = None,
) -> Envelope:
    params = {
        "CallSid": sid,
        "CallStatus": status,
        "AccountSid": ACCOUNT,
        "From": from_,
        "To": to,
        "Timestamp": rfc2822(at),
        "CallDuration": "" if duration is None else str(duration),
        "AudioInMos": "" if mos is None else f"{mos:.2f}",
    }
    if kind is CallbackKind.VOICE:
        params["Direction"] = direction
        if sequence is not None:
            params["SequenceNumber"] = str(sequence)
    return envelope(kind, params, at=at + 1, campaign=campaign)


def recording(sid: str, status: str, *, call_sid: str = "CA1", at: float | None = None) -> Envelope:
    params = {
        "RecordingSid": sid,
        "RecordingStatus": status,
        "AccountSid": ACCOUNT,
        "CallSid": call_sid,
        "RecordingUrl": f"https://example.signalwire.com/recordings/{sid}",
        "RecordingDuration": "12",
    }
    return envelope(CallbackKind.RECORDING, params, at=at)


def transcription(
    sid: str, status: str, *, call_sid: str = "CA1", at: float | None = None
) -> Envelope:
    params = {
        "TranscriptionSid": sid,
        "TranscriptionStatus": status,
        "TranscriptionText": "Hi, please call me back about the order.",
        "RecordingSid": "RE1",
        "AccountSid": ACCOUNT,
        "CallSid": call_sid,
        "From": "+15553334444",
        "To": "+15550001111",
    }
    return envelope(CallbackKind.TRANSCRIPTION, params, at=at)


def event(env: Envelope) -> Event:
    return normalize(env)
