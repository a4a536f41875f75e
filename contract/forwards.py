"""A request to send one SMS: a recording or transcription forward, or an alert.

`forward_id` is the idempotency key (the RecordingSid, the TranscriptionSid or
the alert_id): the dispatcher sends each id at most once, across duplicates
and restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson


class ForwardKind(StrEnum):
    RECORDING = "recording"
    TRANSCRIPTION = "transcription"
    ALERT = "alert"  # an alert's SMS
    ALERT_WEBHOOK = "alert_webhook"
    ALERT_SLACK = "alert_slack"


@dataclass(frozen=True, slots=True)
class ForwardRequest:
    forward_id: str
    kind: ForwardKind
    to: str
    from_: str
    body: str
    call_sid: str | None
    requested_at: float
    account: str | None = None  # the AccountSid whose credentials send it; None: the default

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)  # orjson writes a dataclass as asdict() would, 10x faster

    @classmethod
    def from_bytes(cls, raw: bytes) -> ForwardRequest:
        data: dict[str, Any] = orjson.loads(raw)
        data["kind"] = ForwardKind(data["kind"])
        return cls(**data)
