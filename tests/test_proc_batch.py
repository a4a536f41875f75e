"""One intake batch, without a broker: events, dead letters, state, increments, forwards."""

from __future__ import annotations

import orjson
import pytest

from contract.envelope import Envelope
from contract.errors import ConfigurationError
from contract.forwards import ForwardKind
from contract.kinds import CallbackKind
from contract.settings import Settings
from contract.templates import check_templates
from processors.batch import Raw, process_batch
from processors.sidstore import SidStore
from processors.state import state_from_record
from processors.transitions import TransitionBatch, scope_partition
from processors.windows import WindowPlan
from tests.callbacks import ACCOUNT, recording, sms, transcription

T = 1_800_000_000.0
PARTITIONS = 4
PLAN = WindowPlan.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]


def raws(*envelopes: Envelope, partition: int = 0) -> list[Raw]:
    return [Raw(e.kind, partition, i, e.to_bytes()) for i, e in enumerate(envelopes)]


def store() -> SidStore:
    s = SidStore()
    for p in range(PARTITIONS):
        s.load(p, {})
    return s


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None, forward_to="+15550000001", forward_from="+15550000002")  # type: ignore[call-arg]


def test_every_callback_becomes_an_event_duplicates_too(settings: Settings) -> None:
    batch = raws(
        sms("SM1", "sent", at=T, campaign="spring"),
        sms("SM1", "sent", at=T + 1, campaign="spring"),
        sms("SM1", "delivered", at=T + 2, campaign="spring"),
        partition=2,
    )
    out = process_batch(batch, store(), settings, PLAN, PARTITIONS)
    assert [(p, k) for p, k, _ in out.events] == [(2, b"SM1")] * 3
    assert orjson.loads(out.events[1][2])["status"] == "sent"
    assert (out.changes, out.unchanged) == (2, 1)
    assert [state_from_record(v).status for _, _, v in out.state] == ["sent", "delivered"]
    assert {p for p, _, _ in out.state} == {2}  # the state lives on the callback's partition


def test_increments_go_to_each_scopes_partition(settings: Settings) -> None:
    out = process_batch(
        raws(sms("SM1", "sent", at=T, campaign="spring"), partition=1),
        store(),
        settings,
        PLAN,
        PARTITIONS,
    )
    keys = {
        f"delivery|account:{ACCOUNT}",
        "delivery|number:+15550001111",
        "delivery|campaign:spring",
    }
    found: dict[str, object] = {}
    for partition, record in out.transitions.items():
        decoded = TransitionBatch.from_bytes(record.to_bytes())
        for key, sources in decoded.scopes.items():
            assert scope_partition(key, PARTITIONS) == partition
            found[key] = sources
    assert set(found) == keys
    assert found["delivery|campaign:spring"] == {
        "sms/1": [[int(T // 60 * 60), T, {"sent": 1, "pending": 1}, [0]]]
    }


def test_state_carries_over_between_batches(settings: Settings) -> None:
    s = store()
    process_batch(raws(sms("SM1", "delivered", at=T)), s, settings, PLAN, PARTITIONS)
    again = process_batch(raws(sms("SM1", "delivered", at=T + 5)), s, settings, PLAN, PARTITIONS)
    assert (again.changes, again.unchanged, again.transitions, again.state) == (0, 1, {}, [])


def test_callbacks_that_cannot_be_taken_are_dead_lettered_and_the_batch_goes_on(
    settings: Settings,
) -> None:
    bad_json = Raw(CallbackKind.SMS, 0, 0, b"{not json")
    no_status = sms("SM2", "")
    wrong_topic = Raw(CallbackKind.VOICE, 0, 2, sms("SM3", "sent").to_bytes())
    good = Raw(CallbackKind.SMS, 0, 3, sms("SM4", "sent").to_bytes())
    out = process_batch(
        [bad_json, Raw(CallbackKind.SMS, 1, 7, no_status.to_bytes()), wrong_topic, good],
        store(),
        settings,
        PLAN,
        PARTITIONS,
    )
    assert [(d.reason, d.sid, d.key) for d in out.dead_letters] == [
        ("bad_envelope", None, None),
        ("no_status", "SM2", "SM2"),
        ("wrong_kind", "SM3", "SM3"),
    ]
    assert "undecodable envelope" in out.dead_letters[0].message
    assert out.dead_letters[1].message == "MessageStatus is missing"
    assert "sms envelope on the voice topic" in out.dead_letters[2].message
    # each holds the raw record and where it came from, to be replayed as it was
    letter = out.dead_letters[1]
    assert (letter.stage, letter.topic, letter.partition, letter.offset) == (
        "intake",
        "callbacks.sms",
        1,
        7,
    )
    assert letter.body() == no_status.to_bytes()
    assert out.dead_letters[0].body() == b"{not json"
    assert [k for _, k, _ in out.events] == [b"SM4"]


def test_an_unreadable_value_costs_only_itself(settings: Settings) -> None:
    """NumMedia of "two" is NULL, its text kept; the message still counts as sent (and,
    its media unknown, as an SMS awaiting its receipt, not as an MMS)."""
    unreadable = sms("SM1", "sent", at=T, campaign="spring")
    unreadable.params["NumMedia"] = "two"
    out = process_batch(raws(unreadable), store(), settings, PLAN, PARTITIONS)
    assert out.dead_letters == []
    [(_, key, value)] = out.events
    event = orjson.loads(value)
    assert (key, event["status"], event["values"]["num_media"]) == (b"SM1", "sent", None)
    assert event["parse_errors"] == {"NumMedia": "two"}
    scopes = {
        key: sources
        for record in out.transitions.values()
        for key, sources in TransitionBatch.from_bytes(record.to_bytes()).scopes.items()
    }
    assert scopes["delivery|campaign:spring"]["sms/0"][0][2] == {"sent": 1, "pending": 1}


def test_first_completed_recording_and_transcription_forward_once(settings: Settings) -> None:
    out = process_batch(
        raws(
            recording("RE1", "in-progress"),
            recording("RE1", "completed", call_sid="CA9"),
            recording("RE1", "completed", call_sid="CA9"),
            transcription("TR1", "completed", call_sid="CA9"),
            transcription("TR1", "completed", call_sid="CA9"),
            recording("RE2", "absent"),
            recording("RE2", "completed"),  # absent was final
        ),
        store(),
        settings,
        PLAN,
        PARTITIONS,
    )
    assert [(f.kind, f.forward_id) for f in out.forwards] == [
        (ForwardKind.RECORDING, "RE1"),
        (ForwardKind.TRANSCRIPTION, "TR1"),
    ]
    rec, tr = out.forwards
    assert rec.body == (
        "You have received a voicemail. Listen to the recording here: "
        '"https://example.signalwire.com/recordings/RE1". The Call SID is CA9'
    )
    assert tr.body == (
        "You have received a voicemail from the number +15553334444. The voicemail "
        'transcription is as follows: "Hi, please call me back about the order." '
        "and the Call SID is CA9"
    )
    assert (rec.to, rec.from_, rec.call_sid) == ("+15550000001", "+15550000002", "CA9")


def test_no_forwards_without_both_numbers() -> None:
    quiet = Settings(_env_file=None, forward_to="+15550000001")  # type: ignore[call-arg]
    out = process_batch(raws(recording("RE1", "completed")), store(), quiet, PLAN, PARTITIONS)
    assert out.forwards == [] and out.changes == 1


def test_a_template_with_an_unknown_placeholder_fails_at_start() -> None:
    bad = Settings(_env_file=None, recording_template="{recording_url} {caller}")  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="RECORDING_TEMPLATE"):
        check_templates(bad)


def test_an_alert_template_with_a_placeholder_we_do_not_fill_fails_at_start() -> None:
    check_templates(Settings(_env_file=None))  # type: ignore[call-arg]  # the defaults fill
    bad = Settings(_env_file=None, alert_resolved_template="{type} {scop}")  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="ALERT_RESOLVED_TEMPLATE"):
        check_templates(bad)
