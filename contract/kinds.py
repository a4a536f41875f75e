"""The five callback kinds and their parameters: the one place a field is declared.

Each parameter the provider posts is listed once with its type. The normalizer,
the ClickHouse columns and the exports all derive from these lists, so adding a
callback field means adding one `Param` line here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

from contract import statuses
from contract.topics import Topic


class ParamType(StrEnum):
    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    TIMESTAMP = "timestamp"  # RFC 2822, ISO 8601 or Unix seconds; stored as UTC


class Personal(StrEnum):
    """Personal data in a parameter, which `contract.privacy` redacts before ClickHouse."""

    NUMBER = "number"  # a phone number: optionally an HMAC and its last digits
    TEXT = "text"  # what someone wrote or said: not stored, or for a short time


@dataclass(frozen=True, slots=True)
class Param:
    name: str  # as the provider posts it, e.g. "AudioInMos"
    type: ParamType = ParamType.TEXT
    personal: Personal | None = None

    @property
    def column(self) -> str:
        return snake_case(self.name)


@dataclass(frozen=True, slots=True)
class KindSpec:
    kind: CallbackKind
    sid_param: str  # the identifying SID; the Kafka key and the dedupe anchor
    status_param: str | None
    params: tuple[Param, ...]
    raw_topic: Topic
    table: str
    dedupe_params: tuple[str, ...]  # a re-delivered callback repeats exactly these
    ranks: dict[str, int]  # status precedence; see contract.statuses

    @property
    def sid_column(self) -> str:
        return snake_case(self.sid_param)

    @property
    def status_column(self) -> str | None:
        return snake_case(self.status_param) if self.status_param else None


class CallbackKind(StrEnum):
    SMS = "sms"
    VOICE = "voice"
    RECORDING = "recording"
    TRANSCRIPTION = "transcription"
    INBOUND_CALL = "inbound-call"

    @property
    def spec(self) -> KindSpec:
        return SPECS[self]


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@functools.cache  # on the normalizer's per-parameter path; the regex dominated it
def snake_case(name: str) -> str:
    """`AudioInMos` -> `audio_in_mos`, `From` -> `from`."""
    return _CAMEL.sub("_", name).lower()


INT, FLOAT, TS = ParamType.INT, ParamType.FLOAT, ParamType.TIMESTAMP
NUMBER, WORDS = Personal.NUMBER, Personal.TEXT

SPECS: dict[CallbackKind, KindSpec] = {
    CallbackKind.SMS: KindSpec(
        kind=CallbackKind.SMS,
        sid_param="MessageSid",
        status_param="MessageStatus",
        params=(
            Param("MessageSid"),
            Param("MessageStatus"),
            Param("ErrorCode"),
            Param("AccountSid"),
            Param("From", personal=NUMBER),
            Param("To", personal=NUMBER),
            Param("Body", personal=WORDS),
            Param("NumMedia", INT),
            Param("NumSegments", INT),
            Param("Timestamp", TS),  # JSON formats only; Compatibility SMS callbacks have none
        ),
        raw_topic=Topic.CALLBACKS_SMS,
        table="sms_events",
        ranks=statuses.SMS_RANK,
        dedupe_params=("MessageSid", "MessageStatus"),
    ),
    CallbackKind.VOICE: KindSpec(
        kind=CallbackKind.VOICE,
        sid_param="CallSid",
        status_param="CallStatus",
        params=(
            Param("CallSid"),
            Param("CallStatus"),
            Param("AccountSid"),
            Param("From", personal=NUMBER),
            Param("To", personal=NUMBER),
            Param("Direction"),
            Param("ApiVersion"),
            Param("ForwardedFrom", personal=NUMBER),
            Param("CallerName"),
            Param("ParentCallSid"),
            Param("CallDuration", INT),
            Param("RecordingUrl"),
            Param("RecordingSid"),
            Param("RecordingDuration", INT),
            Param("CallbackSource"),
            Param("Timestamp", TS),
            Param("SequenceNumber", INT),
            Param("AudioInMos", FLOAT),
            Param("ErrorCode"),
        ),
        raw_topic=Topic.CALLBACKS_VOICE,
        table="call_events",
        ranks=statuses.CALL_RANK,
        dedupe_params=("CallSid", "CallStatus", "SequenceNumber"),
    ),
    CallbackKind.RECORDING: KindSpec(
        kind=CallbackKind.RECORDING,
        sid_param="RecordingSid",
        status_param="RecordingStatus",
        params=(
            Param("RecordingSid"),
            Param("RecordingStatus"),
            Param("AccountSid"),
            Param("CallSid"),
            Param("RecordingUrl"),
            Param("RecordingDuration", INT),
            Param("RecordingChannels", INT),
            Param("RecordingSource"),
        ),
        raw_topic=Topic.CALLBACKS_RECORDING,
        table="recording_events",
        ranks=statuses.RECORDING_RANK,
        dedupe_params=("RecordingSid", "RecordingStatus"),
    ),
    CallbackKind.TRANSCRIPTION: KindSpec(
        kind=CallbackKind.TRANSCRIPTION,
        sid_param="TranscriptionSid",
        status_param="TranscriptionStatus",
        params=(
            Param("TranscriptionSid"),
            Param("TranscriptionStatus"),
            Param("TranscriptionText", personal=WORDS),
            Param("TranscriptionUrl"),
            Param("RecordingSid"),
            Param("RecordingUrl"),
            Param("AccountSid"),
            Param("CallSid"),
            Param("From", personal=NUMBER),
            Param("To", personal=NUMBER),
        ),
        raw_topic=Topic.CALLBACKS_TRANSCRIPTION,
        table="transcription_events",
        ranks=statuses.TRANSCRIPTION_RANK,
        dedupe_params=("TranscriptionSid", "TranscriptionStatus"),
    ),
    CallbackKind.INBOUND_CALL: KindSpec(
        kind=CallbackKind.INBOUND_CALL,
        sid_param="CallSid",
        status_param="CallStatus",
        params=(
            Param("CallSid"),
            Param("CallStatus"),
            Param("AccountSid"),
            Param("From", personal=NUMBER),
            Param("To", personal=NUMBER),
            Param("Timestamp", TS),
            Param("CallDuration", INT),
            Param("AudioInMos", FLOAT),
        ),
        raw_topic=Topic.CALLBACKS_INBOUND_CALL,
        table="inbound_call_events",
        ranks=statuses.CALL_RANK,
        dedupe_params=("CallSid", "CallStatus"),
    ),
}

KIND_BY_TOPIC: dict[Topic, CallbackKind] = {spec.raw_topic: kind for kind, spec in SPECS.items()}
