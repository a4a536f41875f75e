"""The dead-letter record, without a broker: one shape for every producer, read leniently,
and the letters written before it read too."""

from __future__ import annotations

import orjson

from contract.deadletters import DeadLetter, LetterState, Reason, Stage, letter_id
from contract.topics import Topic
from tests.callbacks import sms


def letter(raw: bytes, **overrides: object) -> DeadLetter:
    fields: dict[str, object] = {
        "reason": Reason.NO_STATUS,
        "message": "MessageStatus is missing",
        "stage": Stage.INTAKE,
        "topic": Topic.CALLBACKS_SMS,
        "partition": 2,
        "offset": 41,
        "key": "SM1",
        "sid": "SM1",
        "at": 1_800_000_000.5,
    }
    return DeadLetter.of(raw, **(fields | overrides))  # type: ignore[arg-type]


def test_a_letter_round_trips_and_holds_its_record_byte_for_byte() -> None:
    raw = sms("SM1", "").to_bytes()
    dead = letter(raw)
    again = DeadLetter.from_bytes(dead.to_bytes())
    assert again == dead and again.body() == raw
    assert (again.state, again.updated_at) == (LetterState.DEAD, dead.dead_at)
    binary = letter(b"\xff\xfe not utf-8")
    assert binary.raw_encoding == "base64"
    assert DeadLetter.from_bytes(binary.to_bytes()).body() == b"\xff\xfe not utf-8"


def test_the_same_record_is_the_same_letter_wherever_it_was_read() -> None:
    raw = sms("SM1", "").to_bytes()
    first, replay = letter(raw), letter(raw, partition=2, offset=977, at=1_800_000_900.0)
    assert first.letter_id == replay.letter_id == letter_id("callbacks.sms", raw)
    assert letter(raw, topic=Topic.CALLBACKS_VOICE).letter_id != first.letter_id
    marker = first.replayed(at=1_800_000_600.0)
    assert (marker.letter_id, marker.state, marker.dead_at) == (
        first.letter_id,
        LetterState.REPLAYED,
        first.dead_at,
    )
    assert first.updated_at < marker.updated_at < replay.updated_at


def test_unknown_fields_are_ignored() -> None:
    data = orjson.loads(letter(b"{}").to_bytes()) | {"v": 2, "retried_by": "someone"}
    assert DeadLetter.from_bytes(orjson.dumps(data)) == letter(b"{}")


def test_letters_of_the_previous_version_are_read() -> None:
    envelope = sms("SM7", "sent", at=1_800_000_000.0)
    envelope.params["AudioInMos"] = "N/A"
    raw = envelope.to_bytes().decode()
    intake = DeadLetter.from_bytes(
        orjson.dumps(
            {"kind": "sms", "reason": "AudioInMos='N/A' is not a valid float: x", "raw": raw}
        )
    )
    assert (intake.reason, intake.stage, intake.topic, intake.sid, intake.key) == (
        "unreadable_value",
        "intake",
        "callbacks.sms",
        "SM7",
        "SM7",
    )
    assert (intake.partition, intake.dead_at, intake.body()) == (-1, 1_800_000_000.0, raw.encode())

    request = {
        "forward_id": "RE1",
        "kind": "recording",
        "to": "+15550000001",
        "from_": "+15550000002",
        "body": "hi",
        "call_sid": "CA1",
        "requested_at": 1_800_000_000.0,
    }
    refused = DeadLetter.from_bytes(
        orjson.dumps(
            {"forward_id": "RE1", "kind": "recording", "reason": "HTTP 400", "status": 400}
            | {"code": 21211, "attempts": 1, "request": request}
        )
    )
    assert (refused.reason, refused.stage, refused.topic, refused.sid) == (
        "forward_rejected",
        "forwards",
        "forwards",
        "RE1",
    )
    assert orjson.loads(refused.body()) == request

    unreadable = DeadLetter.from_bytes(
        orjson.dumps(
            {"forward_id": "x", "reason": "unreadable forward request: 'kind'"}
            | {"topic": "tabc.forwards", "partition": 1, "offset": 5, "raw": "{}"}
        ),
        prefix="tabc.",
    )
    assert (unreadable.reason, unreadable.topic, unreadable.partition, unreadable.offset) == (
        "unreadable_record",
        "forwards",
        1,
        5,
    )
