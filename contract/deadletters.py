"""A record that could not be handled, kept whole: what the dead-letter topics carry.

Every producer of dead letters writes this one shape: the intake on
`callbacks.dead-letter` (a callback with no SID or no status, an unreadable envelope),
the forwards and alert dispatchers on `forwards.dead-letter` (an SMS the provider
refused, a record that cannot be read or kept failing). The sink writes them to the
`dead_letters` table; `switchboard dead-letters list|replay` reads them there.

A letter holds its original record as it was (`raw`, with the topic, partition, offset
and key it came from), so a replay re-publishes exactly that record where it came from
and it goes through the same path again. `letter_id` is derived from the original topic
and record, not from a position or a counter: a record dead-lettered twice (a stage
that crashed before its commit, a replay that fails again) is the same letter, one row.

Versioned and read leniently: unknown fields are ignored, so records of a newer producer
stay readable, and the records written before this version (`{"kind", "reason", "raw"}`
from the intake; the forwards dispatcher's two shapes) are read as well, with what they
lack filled in from what they hold.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any, Literal

import orjson

from contract.kinds import CallbackKind
from contract.topics import Topic

DEAD_LETTER_VERSION = 1
# On a replayed record: the letter it replays. A dispatcher sends a replayed forward
# whose earlier try was refused, where it would drop a duplicate of it.
REPLAY_HEADER = "switchboard-replay-of"


class Reason(StrEnum):
    """Why a record was dead-lettered: short and stable, for grouping and metric labels."""

    BAD_ENVELOPE = "bad_envelope"  # not a readable envelope: JSON, version or fields
    WRONG_KIND = "wrong_kind"  # an envelope of another kind on this raw topic
    NO_SID = "no_sid"  # the callback names no SID: nothing to keep it under
    NO_STATUS = "no_status"  # the callback has no status: nothing to count
    # A typed value that could not be read: only in letters written before the
    # normalizer kept such callbacks (with the value NULL). Replay them.
    UNREADABLE_VALUE = "unreadable_value"
    UNREADABLE_RECORD = "unreadable_record"  # a forward request or alert that cannot be read
    FORWARD_REJECTED = "forward_rejected"  # the provider refused the SMS (a 4xx but 429)
    PROVIDER_UNAVAILABLE = "provider_unavailable"  # 429, 5xx or no answer, every try
    HANDLER_FAILED = "handler_failed"  # handling kept raising (SWITCHBOARD_RECORD_MAX_ATTEMPTS)


class LetterState(StrEnum):
    DEAD = "dead"  # waiting for a fix and a replay
    REPLAYED = "replayed"  # sent back to its topic, and not dead-lettered again since


class Stage(StrEnum):
    """The stages that dead-letter: the names of their consumers."""

    INTAKE = "intake"  # the raw callback topics
    FORWARDS = "forwards"  # the forwards topic
    ALERT_DISPATCH = "alert-dispatch"  # the alerts topic


def letter_id(topic: str, raw: bytes) -> str:
    """The same original record is the same letter, however often it fails."""
    return "DL" + hashlib.blake2b(topic.encode() + b"\0" + raw, digest_size=16).hexdigest()


def dead_letter_topic(stage: str) -> Topic:
    """Where a stage's letters go (and the replay markers of its letters)."""
    return Topic.CALLBACKS_DEAD_LETTER if stage == Stage.INTAKE else Topic.FORWARDS_DEAD_LETTER


@dataclass(frozen=True, slots=True)
class DeadLetter:
    letter_id: str
    reason: str  # a `Reason` value; a newer producer's reason is kept as it is
    message: str  # for people: what exactly was wrong
    stage: str  # a `Stage` value
    topic: str  # the original record's topic, without the deployment's prefix
    partition: int  # where it was read; -1 when not known (letters of older versions)
    offset: int
    key: str | None
    sid: str | None  # what the record is about: its SID, forward id or alert id
    raw: str  # the original record, as text (`raw_encoding`)
    raw_encoding: Literal["utf-8", "base64"]
    dead_at: float  # epoch seconds: when it was dead-lettered (the last time)
    state: str = LetterState.DEAD
    updated_at: float = 0.0  # version of the letter's row: the later state wins

    @classmethod
    def of(
        cls,
        raw: bytes,
        *,
        reason: Reason,
        message: str,
        stage: Stage,
        topic: Topic,
        partition: int,
        offset: int,
        key: str | None,
        sid: str | None,
        at: float,
    ) -> DeadLetter:
        encoding: Literal["utf-8", "base64"] = "utf-8"
        try:
            text = raw.decode()
        except UnicodeDecodeError:  # kept byte for byte, so that a replay is the same record
            text, encoding = base64.b64encode(raw).decode(), "base64"
        return cls(
            letter_id(topic.value, raw),
            reason.value,
            message,
            stage.value,
            topic.value,
            partition,
            offset,
            key,
            sid,
            text,
            encoding,
            at,
            LetterState.DEAD,
            at,
        )

    def body(self) -> bytes:
        """The original record, byte for byte."""
        if self.raw_encoding == "base64":
            return base64.b64decode(self.raw)
        return self.raw.encode()

    def replayed(self, at: float) -> DeadLetter:
        """The marker a replay publishes: the letter sent back at `at`."""
        return replace(self, state=LetterState.REPLAYED, updated_at=at)

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": DEAD_LETTER_VERSION} | _fields(self))

    @classmethod
    def from_bytes(cls, raw: bytes, prefix: str = "") -> DeadLetter:
        """A letter of any version; `prefix`: the deployment's topic prefix, which the
        oldest letters kept in their topic names. Raises ValueError (or KeyError,
        TypeError) when `raw` is no letter at all."""
        data: dict[str, Any] = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("a dead letter is a JSON object")
        if data.get("v") is None:
            return _legacy(data, prefix)
        known = {name: data[name] for name in _FIELDS if name in data}
        return cls(**known)


_FIELDS = tuple(f.name for f in fields(DeadLetter))


def _fields(letter: DeadLetter) -> dict[str, Any]:
    return {name: getattr(letter, name) for name in _FIELDS}


# How the intake's letters said why, before they carried a reason code.
_LEGACY_REASONS = (
    (re.compile(r"^(undecodable envelope|unsupported envelope version)"), Reason.BAD_ENVELOPE),
    (re.compile(r" envelope on the .* topic$"), Reason.WRONG_KIND),
    (re.compile(r"^\w+ is missing$"), Reason.NO_SID),
    (re.compile(r" is not a valid "), Reason.UNREADABLE_VALUE),
    (re.compile(r"^unreadable forward request"), Reason.UNREADABLE_RECORD),
)


def _legacy_reason(message: str, default: Reason) -> Reason:
    return next((r for pattern, r in _LEGACY_REASONS if pattern.search(message)), default)


def _legacy(data: dict[str, Any], prefix: str) -> DeadLetter:
    """A letter written before version 1, in one of its three shapes. What they lack is
    filled in from what they hold; a time that cannot be known is 0."""
    message = str(data["reason"])
    sid: str | None
    partition, offset, at = -1, -1, 0.0
    if "request" in data:  # the forwards dispatcher: an SMS the provider refused
        request = data["request"]
        status = data.get("status")
        refused = isinstance(status, int) and 400 <= status < 500 and status != 429
        reason = Reason.FORWARD_REJECTED if refused else Reason.PROVIDER_UNAVAILABLE
        stage, topic, raw = Stage.FORWARDS, Topic.FORWARDS, orjson.dumps(request)
        sid, at = str(request["forward_id"]), float(request["requested_at"])
    elif "topic" in data:  # the dispatchers: a record that could not be read or handled
        topic = Topic(str(data["topic"]).removeprefix(prefix))
        stage = Stage.ALERT_DISPATCH if topic is Topic.ALERTS else Stage.FORWARDS
        raw, sid = str(data["raw"]).encode(), data.get("forward_id")
        reason = _legacy_reason(message, Reason.HANDLER_FAILED)
        partition, offset = int(data["partition"]), int(data["offset"])
    else:  # the intake: a callback it could not normalize
        stage, topic = Stage.INTAKE, CallbackKind(data["kind"]).spec.raw_topic
        raw = str(data["raw"]).encode()
        reason = _legacy_reason(message, Reason.BAD_ENVELOPE)
        try:
            envelope = orjson.loads(raw)
            sid, at = str(envelope["sid"]), float(envelope["received_at"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            sid = None
    return DeadLetter.of(
        raw,
        reason=reason,
        message=message,
        stage=stage,
        topic=topic,
        partition=partition,
        offset=offset,
        key=sid,  # records were keyed by their SID, forward id or alert id
        sid=sid,
        at=at,
    )
