"""The raw callback as the edge received it: what lands on `callbacks.<kind>`.

Versioned so a consumer can tell old records from new ones. `params` are the
Compatibility parameters (strings) the normalizer reads, with the query-string tags,
the time of receipt and the signature verdict. Version 2 adds the callback's
`format` (`contract.formats`) and, for the JSON formats, the event exactly as
received in `body` (for Compatibility callbacks `params` are the body as received).
Version 1 records (no format, no body) are still read, as Compatibility callbacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from contract.errors import BadCallback
from contract.formats import Format
from contract.kinds import CallbackKind

ENVELOPE_VERSION = 2
READABLE_VERSIONS = (1, 2)


class SignatureVerdict(StrEnum):
    VALID = "valid"  # checked against the signing key and matched
    UNCHECKED = "unchecked"  # signing is off: no key configured


class Source(StrEnum):
    """Where a status came from: the provider's callback, or the reconcile stage, which
    read it from the provider's REST API when the callback never arrived."""

    CALLBACK = "callback"
    RECONCILE = "reconcile"


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: CallbackKind
    sid: str
    params: dict[str, str]
    received_at: float  # seconds since the epoch, UTC, stamped at the edge
    signature: SignatureVerdict
    tags: dict[str, str] = field(default_factory=dict)
    format: Format = Format.COMPAT
    body: Any = None  # the JSON event as received; None when `params` are the body
    source: Source = Source.CALLBACK

    def to_bytes(self) -> bytes:
        record = {
            "v": ENVELOPE_VERSION,
            "kind": self.kind.value,
            "sid": self.sid,
            "format": self.format.value,
            "params": self.params,
            "tags": self.tags,
            "received_at": self.received_at,
            "signature": self.signature.value,
        }
        if self.body is not None:
            record["body"] = self.body
        if self.source is not Source.CALLBACK:  # absent on what the edge writes
            record["source"] = self.source.value
        return orjson.dumps(record)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        try:
            data: dict[str, Any] = orjson.loads(raw)
            if data.get("v") not in READABLE_VERSIONS:
                raise BadCallback(f"unsupported envelope version {data.get('v')!r}")
            return cls(
                kind=CallbackKind(data["kind"]),
                sid=str(data["sid"]),
                params={str(k): str(v) for k, v in data["params"].items()},
                tags={str(k): str(v) for k, v in (data.get("tags") or {}).items()},
                received_at=float(data["received_at"]),
                signature=SignatureVerdict(data["signature"]),
                format=Format(data.get("format", Format.COMPAT)),
                body=data.get("body"),
                source=Source(data.get("source", Source.CALLBACK)),
            )
        except BadCallback:
            raise
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError) as exc:
            raise BadCallback(f"undecodable envelope: {exc}") from None
