"""An in-process stand-in for `signalwire.rest.Client`, for the seed apps only.

The seed's SMS tracker fetches every failed message from the SignalWire REST API.
A benchmark must not reach the network, so the seed gets this fake, which answers
at once: the real API would add a round trip per failure, so the seed's measured
times are, if anything, flattering to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class FakeMessage:
    sid: str
    error_message: str = "Unknown error"
    to: str = "+15550002222"
    from_: str = "+15550001111"
    body: str = "(body as fetched)"

    @property
    def date_sent(self) -> datetime:
        return datetime.now(UTC)


class _MessageContext:
    def __init__(self, sid: str) -> None:
        self.sid = sid

    def fetch(self) -> FakeMessage:
        return FakeMessage(self.sid)


class _Messages:
    def __call__(self, sid: str) -> _MessageContext:
        return _MessageContext(sid)

    def create(self, **params: Any) -> FakeMessage:
        return FakeMessage("SM" + "0" * 32, to=params.get("to", ""), body=params.get("body", ""))


class Client:
    """`signalwire_client(project, token, signalwire_space_url=...)` as the seed calls it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.messages = _Messages()
