"""contract.formats: each provider format read from its shape into the Compatibility
parameters, statuses in one vocabulary, events routed to their kind by type, and the
refusals that name what is missing or what is accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contract import formats
from contract.envelope import Envelope, SignatureVerdict
from contract.errors import BadCallback
from contract.formats import Format, UnhandledEvent, UnknownFormat, read
from contract.kinds import CallbackKind
from contract.normalize import normalize
from contract.statuses import SMS_RANK, UNKNOWN_RANK, sms_bucket

SMS, VOICE, RECORDING, INBOUND = (
    CallbackKind.SMS,
    CallbackKind.VOICE,
    CallbackKind.RECORDING,
    CallbackKind.INBOUND_CALL,
)


def rest(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "a1b2c3d4-0000-0000-0000-000000000001",
        "project_id": "p-1",
        "status": "delivered",
        "to": "+15551234567",
        "from": "+15559876543",
        "body": "Hello",
        "number_of_segments": 1,
        "timestamp": "2026-03-17T22:26:57Z",
        "error_code": None,
        "error_message": None,
    } | overrides


def swml(event_type: str, **params: Any) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "event_channel": "swml:c-1",
        "timestamp": 1640000000.123,
        "project_id": "p-1",
        "space_id": "s-1",
        "params": params,
    }


def state(call_state: str, end_reason: str | None = None, **more: Any) -> dict[str, Any]:
    device = {"type": "phone", "params": {"from_number": "+1555000", "to_number": "+1555111"}}
    return swml(
        "calling.call.state",
        call_id="c-1",
        node_id="n-1",
        call_state=call_state,
        direction="outbound",
        device=device,
        end_reason=end_reason,
        **more,
    )


def cloud_event(status: str, sid: str = "SM1", **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": f"com.twilio.messaging.message.{status.lower()}",
        "source": "AB1",
        "id": "NO1",
        "time": "2026-01-01T00:00:00.123Z",
        "data": {
            "messageSid": sid,
            "messageStatus": status,
            "to": "+1555111",
            "from": "+1555000",
            "accountSid": "AC1",
        }
        | data,
    }


def one(kind: CallbackKind, data: Any) -> formats.Callback:
    [callback] = read(kind, data)
    return callback


def event(cb: formats.Callback) -> Any:
    return normalize(
        Envelope(cb.kind, cb.sid, cb.params, 1.0, SignatureVerdict.UNCHECKED, cb.tags, cb.format)
    )


def test_signalwire_rest_message_status() -> None:
    cb = one(SMS, rest(custom_variables={"campaign": "spring", "n": 3, "deep": {"x": 1}}))
    assert (cb.kind, cb.format, cb.sid) == (SMS, Format.SIGNALWIRE_REST, rest()["id"])
    assert cb.body["custom_variables"]["n"] == 3  # the event as received
    assert cb.tags == {"campaign": "spring", "n": "3"}
    e = event(cb)
    assert e.status == "delivered"
    assert (e.get("to"), e.get("from"), e.get("num_segments")) == (
        "+15551234567",
        "+15559876543",
        1,
    )
    assert e.get("error_code") is None
    assert e.event_time == e.get("timestamp") == 1773786417.0
    assert "error_message" not in e.extra  # null: absent
    assert e.campaign == "spring"
    failed = event(one(SMS, rest(status="undelivered", error_code=30008, error_message="Unknown")))
    assert (failed.status, failed.get("error_code")) == ("undelivered", "30008")
    assert failed.extra["error_message"] == "Unknown"


def test_a_rest_status_goes_to_sms_whatever_the_url() -> None:
    assert one(VOICE, rest()).kind is SMS


@pytest.mark.parametrize(
    ("call_state", "end_reason", "status"),
    [
        ("created", None, "initiated"),
        ("ringing", None, "ringing"),
        ("answered", None, "answered"),
        ("ending", None, "answered"),
        ("ended", "hangup", "completed"),
        ("ended", None, "completed"),
        ("ended", "busy", "busy"),
        ("ended", "no_answer", "no-answer"),
        ("ended", "cancel", "canceled"),
        ("ended", "declined", "busy"),
        ("ended", "error", "failed"),
    ],
)
def test_swml_call_state_maps_to_the_call_status(
    call_state: str, end_reason: str | None, status: str
) -> None:
    cb = one(VOICE, state(call_state, end_reason))
    assert (cb.kind, cb.format, cb.sid) == (VOICE, Format.SWML, "c-1")
    e = event(cb)
    assert e.status == status
    assert (e.get("from"), e.get("to"), e.get("direction")) == ("+1555000", "+1555111", "outbound")
    assert e.get("timestamp") == 1640000000.123
    assert e.get("account_sid") == "p-1"


def test_swml_sip_legs_and_the_inbound_url() -> None:
    data = state("ended", "hangup")
    data["params"]["device"] = {"type": "sip", "params": {"from": "sip:a@x", "to": "sip:b@y"}}
    cb = one(INBOUND, data)
    assert cb.kind is INBOUND  # a call state event fits the inbound-call URL it came to
    assert (cb.params["From"], cb.params["To"]) == ("sip:a@x", "sip:b@y")


def test_swml_record_both_layouts_route_to_recording() -> None:
    flat = swml(
        "calling.call.record",
        state="finished",
        call_id="c-1",
        recording_id="r-1",
        url="https://x/rec",
        duration=15,
        size=100,
    )
    nested = swml(
        "calling.call.record",
        state="no_input",
        call_id="c-1",
        control_id="ctl-2",
        record={"url": "https://x/rec2", "duration": 15.5, "size": 9, "format": "mp3"},
    )
    a, b = one(VOICE, flat), one(VOICE, nested)  # posted to the voice status_url
    assert (a.kind, a.sid, b.kind, b.sid) == (RECORDING, "r-1", RECORDING, "ctl-2")
    ea, eb = event(a), event(b)
    assert (ea.status, ea.get("recording_url"), ea.get("recording_duration")) == (
        "completed",
        "https://x/rec",
        15,
    )
    assert (eb.status, eb.get("recording_url"), eb.get("recording_duration")) == (
        "absent",
        "https://x/rec2",
        15,
    )
    assert eb.extra["format"] == "mp3"


@pytest.mark.parametrize(
    ("connect_state", "status"),
    [("connecting", "ringing"), ("connected", "answered"), ("failed", "failed")],
)
def test_swml_connect_reports_the_dialled_leg(connect_state: str, status: str) -> None:
    data = swml(
        "calling.call.connect",
        call_id="c-1",
        connect_state=connect_state,
        peer={"call_id": "c-2", "device": {"params": {"to_number": "+1555222"}}},
    )
    cb = one(RECORDING, data)
    assert (cb.kind, cb.sid) == (VOICE, "c-2")
    e = event(cb)
    assert (e.status, e.get("parent_call_sid"), e.get("to")) == (status, "c-1", "+1555222")


def test_event_streams_one_event_and_a_batch() -> None:
    cb = one(VOICE, cloud_event("DELIVERED", errorCode=30003, numberOfSegments=2))
    assert (cb.kind, cb.format, cb.sid) == (SMS, Format.EVENT_STREAMS, "SM1")
    e = event(cb)
    assert (e.status, e.get("error_code"), e.get("num_segments")) == ("delivered", "30003", 2)
    assert e.get("timestamp") == pytest.approx(1767225600.123)  # the CloudEvent's time
    batch = read(
        SMS,
        [
            cloud_event("SENT"),
            cloud_event("READ", "SM2"),
            {"specversion": "1.0", "type": "com.twilio.voice.x", "data": {}},
        ],
    )
    assert [(c.sid, c.params["MessageStatus"]) for c in batch] == [("SM1", "sent"), ("SM2", "read")]
    no_status = cloud_event("X")
    del no_status["data"]["messageStatus"]
    no_status["type"] = "com.twilio.messaging.message.undelivered"
    assert one(SMS, no_status).params["MessageStatus"] == "undelivered"


def test_compat_json_keeps_nested_values_as_text() -> None:
    cb = one(SMS, {"MessageSid": "SM1", "MessageStatus": "sent", "NumMedia": 0, "X": {"a": [1]}})
    assert cb.format is Format.COMPAT
    assert cb.params == {
        "MessageSid": "SM1",
        "MessageStatus": "sent",
        "NumMedia": "0",
        "X": '{"a":[1]}',
    }


@pytest.mark.parametrize(
    ("kind", "data", "field"),
    [
        (SMS, rest(id=None), "id"),
        (SMS, {k: v for k, v in rest().items() if k != "id"}, "id"),
        (VOICE, state("answered") | {"params": {"call_state": "answered"}}, "params.call_id"),
        (RECORDING, swml("calling.call.record", state="finished", call_id="c"), "recording_id"),
        (SMS, cloud_event("SENT", sid=""), "data.messageSid"),
        (SMS, {"MessageStatus": "sent"}, "MessageSid"),
    ],
)
def test_a_recognised_format_without_its_identity_names_the_field(
    kind: CallbackKind, data: Any, field: str
) -> None:
    with pytest.raises(BadCallback, match=field.replace(".", r"\.")):
        read(kind, data)


@pytest.mark.parametrize(
    "data", [{"sid": "x"}, {}, [], [1, 2], "text", 42, [{"specversion": "1.0"}, {"id": 1}]]
)
def test_a_body_of_no_known_format_lists_the_formats(data: Any) -> None:
    with pytest.raises(UnknownFormat, match="accepted: .*SWML.*Event Streams"):
        read(SMS, data)


def test_unhandled_event_types_are_named() -> None:
    with pytest.raises(UnhandledEvent, match="calling.call.play"):
        read(VOICE, swml("calling.call.play", call_id="c"))
    with pytest.raises(UnhandledEvent, match="com.twilio.voice"):
        read(VOICE, {"specversion": "1.0", "type": "com.twilio.voice.x", "data": {}})


def test_unknown_keys_never_refuse_a_callback() -> None:
    cb = one(SMS, rest(brand_new={"nested": [1, 2]}, flag=True))
    assert cb.params["brand_new.nested"] == "[1,2]" and cb.params["flag"] == "true"


def test_every_new_sms_status_has_a_rank_and_an_unknown_one_is_kept_apart() -> None:
    for status in (
        "read",
        "accepted",
        "scheduled",
        "canceled",
        "partially_delivered",
        "initiated",
        "invalid",
    ):
        assert status in SMS_RANK, status
    e = event(one(SMS, rest(status="carrier_wobble")))
    assert e.status == "carrier_wobble"  # stored as it came, ranked UNKNOWN_RANK
    assert SMS_RANK.get(e.status, UNKNOWN_RANK) == UNKNOWN_RANK


def test_the_envelope_keeps_the_event_as_received_and_reads_version_1() -> None:
    cb = one(VOICE, state("ended", "busy"))
    envelope = Envelope(
        cb.kind, cb.sid, cb.params, 1.0, SignatureVerdict.VALID, {}, cb.format, cb.body
    )
    again = Envelope.from_bytes(envelope.to_bytes())
    assert again == envelope and again.body == state("ended", "busy")
    v1 = (
        b'{"v":1,"kind":"sms","sid":"SM1","params":{"MessageSid":"SM1"},"tags":{},'
        b'"received_at":1.0,"signature":"unchecked"}'
    )
    old = Envelope.from_bytes(v1)
    assert (old.format, old.body, old.params) == (Format.COMPAT, None, {"MessageSid": "SM1"})


def test_the_readmes_sms_status_table_is_what_the_code_counts() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("| SMS status | comes from | rank | counts as |", 1)[1]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    documented = {
        row[0].strip("`"): (int(row[2]), row[3].split(" ")[0].rstrip(":")) for row in rows
    }
    other = documented.pop("any other")
    assert other == (UNKNOWN_RANK, "other")
    assert documented.keys() == SMS_RANK.keys()
    for status, (rank, counts) in documented.items():
        bucket = sms_bucket(status).replace("_", " ")
        assert (rank, counts) == (SMS_RANK[status], bucket.split(" ")[0]), status
