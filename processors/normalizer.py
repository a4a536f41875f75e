"""Raw callback bytes to a normalized `Event`, or the dead-letter record saying why not."""

from __future__ import annotations

import orjson

from contract.envelope import Envelope
from contract.errors import BadCallback
from contract.events import Event
from contract.kinds import CallbackKind
from contract.normalize import normalize


def read(kind: CallbackKind, raw: bytes) -> Event:
    """The event of a raw record from the topic of `kind`; BadCallback if it has none."""
    envelope = Envelope.from_bytes(raw)
    if envelope.kind is not kind:
        raise BadCallback(f"{envelope.kind} envelope on the {kind} topic", sid=envelope.sid)
    try:
        return normalize(envelope)
    except BadCallback as exc:
        exc.sid = exc.sid or envelope.sid
        raise


def dead_letter_record(kind: CallbackKind, raw: bytes, reason: str) -> bytes:
    return orjson.dumps(
        {"kind": kind.value, "reason": reason, "raw": raw.decode("utf-8", errors="replace")}
    )
