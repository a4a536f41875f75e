"""Recording and transcription forwards: the seed's two forwarder apps, as requests. Pure.

A recording or transcription whose state first reaches `completed` becomes one
ForwardRequest (the per-SID state makes later duplicates no transition at all);
its id is the RecordingSid or TranscriptionSid, so the dispatcher sends it at most
once even if a crash makes the intake publish it again. Nothing is forwarded
unless both SWITCHBOARD_FORWARD_TO and SWITCHBOARD_FORWARD_FROM are set, for the
callback's account (SWITCHBOARD_ACCOUNTS) or by default.
"""

from __future__ import annotations

from contract.events import Event
from contract.forwards import ForwardKind, ForwardRequest
from contract.kinds import CallbackKind
from contract.settings import Settings
from processors.state import Transition

COMPLETED = "completed"
UNKNOWN = "unknown"
_FORWARDED = frozenset({CallbackKind.RECORDING, CallbackKind.TRANSCRIPTION})


def forward_request(
    transition: Transition, event: Event, settings: Settings
) -> ForwardRequest | None:
    if transition.status != COMPLETED or event.kind not in _FORWARDED:
        return None
    account = event.get("account_sid")
    settings = settings.for_account(account)  # its own numbers and templates, if it has them
    if not (settings.forward_to and settings.forward_from):
        return None
    call_sid = event.get("call_sid")
    if event.kind is CallbackKind.RECORDING:
        kind = ForwardKind.RECORDING
        body = settings.recording_template.format(
            recording_url=event.get("recording_url") or UNKNOWN, call_sid=call_sid or UNKNOWN
        )
    elif event.kind is CallbackKind.TRANSCRIPTION:
        kind = ForwardKind.TRANSCRIPTION
        body = settings.transcription_template.format(
            from_number=event.get("from") or UNKNOWN,
            transcription_text=event.get("transcription_text") or "",
            call_sid=call_sid or UNKNOWN,
        )
    else:
        return None
    return ForwardRequest(
        forward_id=event.sid,
        kind=kind,
        to=settings.forward_to,
        from_=settings.forward_from,
        body=body,
        call_sid=call_sid,
        requested_at=event.received_at,
        account=account,
    )
