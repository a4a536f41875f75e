"""Lenient normalization, without a broker: an unreadable value costs only itself."""

from __future__ import annotations

import dataclasses

import pytest

from contract.deadletters import Reason
from contract.errors import BadCallback
from contract.events import NO_PARSE_ERRORS, Event
from contract.kinds import CallbackKind
from contract.normalize import normalize
from processors.state import step
from tests.callbacks import call, sms

T = 1_800_000_000.0


@pytest.mark.parametrize(
    ("param", "text", "column"),
    [
        ("AudioInMos", "N/A", "audio_in_mos"),
        ("AudioInMos", "nan", "audio_in_mos"),
        ("Timestamp", "2025-13-01T12:00:00Z", "timestamp"),  # no 13th month
        ("Timestamp", "yesterday", "timestamp"),
        ("Timestamp", "1e999", "timestamp"),
        ("Timestamp", "Tue, 01 Jun 9999 12:00:00 +0000", "timestamp"),  # beyond DateTime64
        ("CallDuration", "12s", "call_duration"),
        ("CallDuration", "99999999999999999999", "call_duration"),  # beyond Int64
        ("SequenceNumber", "1e400", "sequence_number"),
    ],
)
def test_an_unreadable_value_is_null_and_its_text_is_kept(
    param: str, text: str, column: str
) -> None:
    envelope = call("CA1", "completed", at=T, duration=60, mos=4.2, sequence=3)
    envelope.params["ErrorCode"] = "13224"
    envelope.params[param] = text
    event = normalize(envelope)
    assert (event.sid, event.status, event.get("error_code")) == ("CA1", "completed", "13224")
    assert event.get(column) is None
    assert dict(event.parse_errors) == {param: text}
    # the rest of the callback is read as usual
    readable = {"audio_in_mos": 4.2, "call_duration": 60, "sequence_number": 3, "timestamp": T}
    assert {c: event.get(c) for c in readable if c != column} == {
        c: v for c, v in readable.items() if c != column
    }
    if column == "timestamp":  # no event time from the provider: the edge's receipt time
        assert event.event_time == envelope.received_at


def test_a_readable_callback_makes_no_parse_errors_map() -> None:
    a, b = normalize(sms("SM1", "sent")), normalize(sms("SM2", "delivered"))
    assert a.parse_errors is NO_PARSE_ERRORS and b.parse_errors is NO_PARSE_ERRORS
    assert Event.from_bytes(a.to_bytes()).parse_errors == {}


def test_unknown_statuses_and_parameters_are_kept() -> None:
    envelope = sms("SM1", "carrier-accepted")
    envelope.params["SmsStatus"] = "carrier-accepted"
    event = normalize(envelope)
    assert event.status == "carrier-accepted"
    assert event.extra == {"SmsStatus": "carrier-accepted"}


@pytest.mark.parametrize(
    ("blank", "reason", "sid"),
    [("MessageSid", Reason.NO_SID, None), ("MessageStatus", Reason.NO_STATUS, "SM1")],
)
def test_only_a_callback_without_sid_or_status_is_refused(
    blank: str, reason: Reason, sid: str | None
) -> None:
    envelope = sms("SM1", "sent")
    envelope.params[blank] = " "
    if blank == "MessageSid":
        envelope = dataclasses.replace(envelope, sid="")
    with pytest.raises(BadCallback) as refused:
        normalize(envelope)
    assert (refused.value.code, refused.value.sid) == (reason, sid)
    assert refused.value.reason == f"{blank} is missing"


def test_null_mos_and_duration_are_absent_for_the_counts_not_zero() -> None:
    envelope = call("CA1", "completed", at=T, kind=CallbackKind.INBOUND_CALL, duration=60)
    envelope.params["AudioInMos"] = "N/A"
    envelope.params["CallDuration"] = "sixty"
    transition = step(None, normalize(envelope))
    assert transition is not None
    [count] = transition.counts
    assert count.deltas == {"calls": 1, "completed": 1}  # no duration_s, no mos_count/mos_sum
