"""The raw callback as the edge received it: what lands on `callbacks.<kind>`.

Versioned so a consumer can tell old records from new ones. Every parameter is
kept as received (strings), with the query-string tags, the time of receipt and
the signature verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from contract.errors import BadCallback
from contract.kinds import CallbackKind

ENVELOPE_VERSION = 1


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
    source: Source = Source.CALLBACK

    def to_bytes(self) -> bytes:
        extra = {} if self.source is Source.CALLBACK else {"source": self.source.value}
        return orjson.dumps(
            {
                "v": ENVELOPE_VERSION,
                "kind": self.kind.value,
                "sid": self.sid,
                "params": self.params,
                "tags": self.tags,
                "received_at": self.received_at,
                "signature": self.signature.value,
            }
            | extra  # absent on what the edge writes: a callback is the default
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        try:
            data: dict[str, Any] = orjson.loads(raw)
            if data.get("v") != ENVELOPE_VERSION:
                raise BadCallback(f"unsupported envelope version {data.get('v')!r}")
            return cls(
                kind=CallbackKind(data["kind"]),
                sid=str(data["sid"]),
                params={str(k): str(v) for k, v in data["params"].items()},
                tags={str(k): str(v) for k, v in (data.get("tags") or {}).items()},
                received_at=float(data["received_at"]),
                signature=SignatureVerdict(data["signature"]),
                source=Source(data.get("source", Source.CALLBACK)),
            )
        except BadCallback:
            raise
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError) as exc:
            raise BadCallback(f"undecodable envelope: {exc}") from None
