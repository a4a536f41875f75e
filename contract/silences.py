"""Silences: an alert of a silenced scope (and type) is still published and stored,
marked `silenced`, but notifies no one.

A silence is a record on the compacted `alerts.silences` topic, keyed by its id; a
tombstone (no value) removes it. The processors follow the topic and mark the alerts
they raise; `switchboard silence`, `silences` and `unsilence` write and read it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, fields
from typing import Any

import orjson

from contract.alerts import AlertType

VERSION = 1


@dataclass(frozen=True, slots=True)
class Silence:
    silence_id: str
    scope: str  # a scope key, e.g. campaign:spring-sale or number:+15550001111
    type: AlertType | None  # None: every type
    starts_at: float  # epoch seconds, UTC
    ends_at: float
    comment: str = ""
    version: int = VERSION

    @classmethod
    def new(
        cls, scope: str, for_s: float, now: float, type_: AlertType | None, comment: str = ""
    ) -> Silence:
        return cls(f"SI{secrets.token_hex(8)}", scope, type_, now, now + for_s, comment)

    def covers(self, type_: AlertType, scope: str, at: float) -> bool:
        return (
            self.scope == scope
            and (self.type is None or self.type is type_)
            and self.starts_at <= at < self.ends_at
        )

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Silence:
        data: dict[str, Any] = {k: v for k, v in orjson.loads(raw).items() if k in _FIELDS}
        data["type"] = AlertType(data["type"]) if data.get("type") else None
        return cls(**data)


_FIELDS = frozenset(f.name for f in fields(Silence))


class Silences:
    """The silences of a topic read so far, by id."""

    def __init__(self) -> None:
        self.by_id: dict[str, Silence] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the topic: a silence, or a tombstone that removes it."""
        if not key:
            return
        if value is None:
            self.by_id.pop(key.decode(), None)
        else:
            silence = Silence.from_bytes(value)
            self.by_id[silence.silence_id] = silence

    def covers(self, type_: AlertType, scope: str, at: float) -> bool:
        return any(s.covers(type_, scope, at) for s in list(self.by_id.values()))

    def active(self, at: float) -> list[Silence]:
        return sorted((s for s in self.by_id.values() if s.ends_at > at), key=lambda s: s.starts_at)
