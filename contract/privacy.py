"""Personal data: phone numbers and what people wrote or said, and how Switchboard keeps them.

The parameters that hold them are marked in `contract.kinds` (`Personal`). Before a
normalized event is published for ClickHouse, `Redactor` drops the texts
(`SWITCHBOARD_RETENTION_TEXTS_DAYS=0`, the default) and, with
`SWITCHBOARD_HASH_NUMBERS`, replaces each number with `number_token`: an HMAC keyed by
`SWITCHBOARD_NUMBER_HASH_KEY` and the last digits, the same for one number everywhere,
so reports grouping by number still group. Every writer and `switchboard forget` use
these functions, so a number is hashed one way only.

Log lines name SIDs, never a number or a text; `masked` is for the rare line that must
say which number it is about.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract.events import Event
from contract.kinds import SPECS, CallbackKind, Personal
from contract.settings import Settings

# Digits of a number kept in clear beside its HMAC, for people to tell numbers apart.
SHOWN_DIGITS = 4
TOKEN_PREFIX = "h:"

# By kind, the columns of `contract.kinds` that hold numbers and texts.
NUMBER_COLUMNS: dict[CallbackKind, tuple[str, ...]] = {
    kind: tuple(p.column for p in spec.params if p.personal is Personal.NUMBER)
    for kind, spec in SPECS.items()
}
TEXT_COLUMNS: dict[CallbackKind, tuple[str, ...]] = {
    kind: tuple(p.column for p in spec.params if p.personal is Personal.TEXT)
    for kind, spec in SPECS.items()
}


@functools.lru_cache(maxsize=65_536)
def digits(number: str) -> str:
    """`+1 (555) 100-0003` -> `15551000003`: how a number is searched for in any store
    (with or without `+`, URL-encoded or not, it contains these digits in a row)."""
    return "".join(ch for ch in number if ch.isdigit())


def number_token(number: str, key: bytes) -> str:
    """`h:<16 hex of HMAC-SHA256(key, digits)>:<last 4 digits>`; an empty value stays empty."""
    found = digits(number)
    if not found or number.startswith(TOKEN_PREFIX):  # nothing to hash, or hashed already
        return number
    return _token(found, key)


@functools.lru_cache(maxsize=65_536)  # a message's number comes back with each status
def _token(found: str, key: bytes) -> str:
    mac = hmac.digest(key, found.encode(), "sha256").hex()[:16]  # one-shot: the C path
    return f"{TOKEN_PREFIX}{mac}:{found[-SHOWN_DIGITS:]}"


def masked(number: str | None) -> str:
    """For a log line: `…0003`."""
    return f"…{digits(number or '')[-SHOWN_DIGITS:]}" if number else "-"


def masked_scope(scope: str) -> str:
    """`number:+15550001111` -> `number:…1111` for a log line; other scopes as they are."""
    kind, _, value = scope.partition(":")
    return f"{kind}:{masked(value)}" if kind == "number" else scope


def number_key(settings: Settings) -> bytes | None:
    """The HMAC key when numbers are hashed, else None."""
    if not settings.hash_numbers or settings.number_hash_key is None:
        return None
    return settings.number_hash_key.get_secret_value().encode()


def stored_forms(settings: Settings, number: str) -> list[str]:
    """What a number looks like where Switchboard may keep it: its digits (which the
    raw, `+`-prefixed and URL-encoded forms all contain) and, hashed, its token."""
    forms = [digits(number)]
    key = number_key(settings)
    if key is not None:
        forms.append(number_token(number, key))
    return forms


@dataclass(frozen=True, slots=True)
class Redactor:
    """What ClickHouse may keep of an event, by the settings."""

    drop_texts: bool
    key: bytes | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor | None:
        """None when nothing is redacted (texts kept for a while, numbers in clear)."""
        redactor = cls(settings.retention_texts_days == 0, number_key(settings))
        return redactor if redactor.drop_texts or redactor.key is not None else None

    def values(self, kind: CallbackKind, values: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(values)
        if self.drop_texts:
            for column in TEXT_COLUMNS[kind]:
                if out.get(column) is not None:
                    out[column] = None
        if self.key is not None:
            for column in NUMBER_COLUMNS[kind]:
                value = out.get(column)
                if isinstance(value, str) and value:
                    out[column] = number_token(value, self.key)
        return out

    def event_bytes(self, event: Event) -> bytes:
        """`event.to_bytes()`, redacted; on the intake's per-callback path, so an event
        with nothing to redact (most status callbacks: no text, numbers in clear) is
        written as it is, and no other Event is made."""
        values = event.values
        touched = TEXT_COLUMNS[event.kind] if self.drop_texts else ()
        if self.key is not None:
            touched = touched + NUMBER_COLUMNS[event.kind]
        if not any(values.get(column) for column in touched):
            return event.to_bytes()
        return event.to_bytes(self.values(event.kind, values))

    def number(self, number: str | None) -> str | None:
        if self.key is None or not number:
            return number
        return number_token(number, self.key)

    def text(self, text: str | None) -> str | None:
        return None if self.drop_texts else text
