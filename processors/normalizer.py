"""Raw callback bytes to a normalized `Event`, or `BadCallback` with its dead-letter reason."""

from __future__ import annotations

from contract.deadletters import Reason
from contract.envelope import Envelope
from contract.errors import BadCallback
from contract.events import Event
from contract.kinds import CallbackKind
from contract.normalize import normalize


def read(kind: CallbackKind, raw: bytes) -> Event:
    """The event of a raw record from the topic of `kind`; BadCallback if it has none."""
    envelope = Envelope.from_bytes(raw)
    if envelope.kind is not kind:
        reason = f"{envelope.kind} envelope on the {kind} topic"
        raise BadCallback(reason, sid=envelope.sid, code=Reason.WRONG_KIND)
    return normalize(envelope)
