"""SMS forwards through the real SignalWire SDK against the local fake, from the real
`forwards` topic: one SMS per forward_id across duplicates and restarts, 429/5xx
retried, other 4xx dead-lettered once, and a dry run without credentials."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import Producer

from contract.deadletters import REPLAY_HEADER, DeadLetter
from contract.forwards import ForwardKind, ForwardRequest
from contract.kafka import producer_config
from contract.settings import Settings
from contract.topics import Topic, topic_name
from sinks.clickhouse.store import Store
from sinks.signalwire.forwards import forwards_consumer
from tests.fake_signalwire import FakeSignalWire
from tests.harness import Running, committed_total, produce, read_topic, wait_for
from tests.proc_traffic import assert_published
from tests.sink_data import PROJECT, T0, with_signalwire

pytestmark = pytest.mark.kafka

FORWARD_FROM, FORWARD_TO = "+15550009999", "+15550008888"
RECORDING_SID, CALL_SID = "RE" + "1" * 32, "CA" + "2" * 32
RECORDING_URL = f"https://example.signalwire.com/api/laml/recordings/{RECORDING_SID}.mp3"
MESSAGES = f"/2010-04-01/Accounts/{PROJECT}/Messages.json"


@pytest.fixture
def sw(fake: FakeSignalWire, topics: Settings) -> Settings:
    fake.reset()
    return with_signalwire(topics, fake.base_url, forward_from=FORWARD_FROM, forward_to=FORWARD_TO)


def recording_forward(settings: Settings, sid: str = RECORDING_SID) -> ForwardRequest:
    """What the processors publish for a completed recording callback."""
    return ForwardRequest(
        forward_id=sid,
        kind=ForwardKind.RECORDING,
        to=FORWARD_TO,
        from_=FORWARD_FROM,
        body=settings.recording_template.format(recording_url=RECORDING_URL, call_sid=CALL_SID),
        call_sid=CALL_SID,
        requested_at=T0,
    )


def _loop(settings: Settings, store: Store, group: str = "forwards"):
    producer = Producer(producer_config(settings))
    return forwards_consumer(settings, store, producer, group=settings.topic_prefix + group)


def _handled(settings: Settings, n: int, group: str = "forwards") -> None:
    wait_for(
        lambda: committed_total(settings, settings.topic_prefix + group, Topic.FORWARDS) == n,
        what=f"{n} forward requests handled and committed",
    )


def _forwards(store: Store) -> list[dict[str, object]]:
    return store.query_dicts(f"SELECT * FROM {store.table('forwards')} FINAL ORDER BY forward_id")


def _creates(fake: FakeSignalWire) -> int:
    return sum(r.method == "POST" and r.path == MESSAGES for r in fake.requests)


def test_recording_delivered_three_times_is_one_sms_across_restarts(
    fake: FakeSignalWire, sw: Settings, store: Store
) -> None:
    request = recording_forward(sw)
    produce(sw, Topic.FORWARDS, [(request.forward_id, request.to_bytes())] * 3)
    with Running(_loop(sw, store)):
        _handled(sw, 3)
    # a restart that reads the request again, and a replay by a group with no offsets
    produce(sw, Topic.FORWARDS, [(request.forward_id, request.to_bytes())])
    with Running(_loop(sw, store)), Running(_loop(sw, store, group="replay")):
        _handled(sw, 4)
        _handled(sw, 4, group="replay")

    [sent] = fake.sent_messages()
    assert (sent["To"], sent["From"]) == (FORWARD_TO, FORWARD_FROM)
    assert RECORDING_URL in sent["Body"] and CALL_SID in sent["Body"]
    assert _creates(fake) == 1
    [row] = _forwards(store)
    assert (row["forward_id"], row["kind"], row["state"], row["attempts"]) == (
        RECORDING_SID,
        "recording",
        "sent",
        1,
    )
    assert str(row["provider_sid"]).startswith("SM") and row["call_sid"] == CALL_SID


@pytest.mark.parametrize("status", [500, 429])
def test_retryable_errors_then_201_is_one_delivered_forward(
    fake: FakeSignalWire, sw: Settings, store: Store, status: int
) -> None:
    fake.fail_next(2, status, only_creates=True)
    request = recording_forward(sw)
    produce(sw, Topic.FORWARDS, [(request.forward_id, request.to_bytes())])
    with Running(_loop(sw, store)):
        _handled(sw, 1)

    assert _creates(fake) == 3 and len(fake.sent_messages()) == 1
    [row] = _forwards(store)
    assert (row["state"], row["attempts"], row["error"]) == ("sent", 3, None)
    assert read_topic(sw, Topic.FORWARDS_DEAD_LETTER, expect=0, timeout=1) == []


def test_400_is_dead_lettered_once_with_no_retry_storm(
    fake: FakeSignalWire, sw: Settings, store: Store
) -> None:
    fake.fail_next(1, 400, only_creates=True)
    request = recording_forward(sw)
    produce(sw, Topic.FORWARDS, [(request.forward_id, request.to_bytes())] * 2)
    with Running(_loop(sw, store)):
        _handled(sw, 2)

    assert _creates(fake) == 1 and fake.sent_messages() == []
    [row] = _forwards(store)
    assert (row["state"], row["attempts"]) == ("dead", 1)
    assert "HTTP 400" in str(row["error"])
    [dead] = read_topic(sw, Topic.FORWARDS_DEAD_LETTER, expect=1)
    letter = DeadLetter.from_bytes(dead.value())
    assert dead.key() == letter.letter_id.encode()
    assert (letter.reason, letter.stage, letter.topic, letter.sid) == (
        "forward_rejected",
        "forwards",
        "forwards",
        RECORDING_SID,
    )
    assert "HTTP 400" in letter.message and "(1 tries)" in letter.message
    assert letter.body() == request.to_bytes()  # the request as it was read: replayable


def test_a_replayed_dead_forward_is_sent_once_a_duplicate_is_not(
    fake: FakeSignalWire, sw: Settings, store: Store
) -> None:
    """Refused once (the provider's cause, since removed); then a provider-side duplicate
    of the request sends nothing, and the request replayed from its dead letter is sent,
    once, however often it is replayed."""
    fake.fail_next(1, 400, only_creates=True)
    request = recording_forward(sw)
    produce(sw, Topic.FORWARDS, [(request.forward_id, request.to_bytes())] * 2)
    with Running(_loop(sw, store)):
        _handled(sw, 2)
        assert _creates(fake) == 1 and _forwards(store)[0]["state"] == "dead"
        [dead] = read_topic(sw, Topic.FORWARDS_DEAD_LETTER, expect=1)
        letter = DeadLetter.from_bytes(dead.value())
        replay = Producer(producer_config(sw))
        for _ in range(2):
            replay.produce(
                topic_name(Topic.FORWARDS, sw.topic_prefix),
                letter.body(),
                letter.key,
                partition=letter.partition,
                headers=[(REPLAY_HEADER, letter.letter_id.encode())],
            )
        assert replay.flush(10) == 0
        _handled(sw, 4)

    [sent] = fake.sent_messages()
    assert RECORDING_URL in sent["Body"] and _creates(fake) == 2
    [row] = _forwards(store)
    assert (row["state"], row["attempts"]) == ("sent", 1)


def test_retries_are_bounded_then_dead_lettered(
    fake: FakeSignalWire, sw: Settings, store: Store
) -> None:
    bounded = sw.model_copy(update={"rest_max_attempts": 3})
    fake.fail_next(10, 503, only_creates=True)
    request = recording_forward(bounded)
    produce(bounded, Topic.FORWARDS, [(request.forward_id, request.to_bytes())])
    with Running(_loop(bounded, store)):
        _handled(bounded, 1)

    assert _creates(fake) == 3
    [row] = _forwards(store)
    assert (row["state"], row["attempts"]) == ("dead", 3)
    [dead] = read_topic(bounded, Topic.FORWARDS_DEAD_LETTER, expect=1)
    assert DeadLetter.from_bytes(dead.value()).reason == "provider_unavailable"


def test_unreadable_request_is_dead_lettered_and_the_next_one_sent(
    fake: FakeSignalWire, sw: Settings, store: Store
) -> None:
    request = recording_forward(sw)
    produce(
        sw,
        Topic.FORWARDS,
        [("RE-broken", b'{"forward_id": "RE-broken"}'), (request.forward_id, request.to_bytes())],
    )
    with Running(_loop(sw, store)):
        _handled(sw, 2)

    assert len(fake.sent_messages()) == 1
    [dead] = read_topic(sw, Topic.FORWARDS_DEAD_LETTER, expect=1)
    letter = DeadLetter.from_bytes(dead.value())
    assert (letter.reason, letter.sid, letter.partition) == ("unreadable_record", "RE-broken", 0)
    assert "unreadable forward request" in letter.message
    assert [r["forward_id"] for r in _forwards(store)] == [RECORDING_SID]
    assert assert_published(sw, Topic.FORWARDS_DEAD_LETTER) == 1


def test_without_credentials_the_forward_is_a_logged_dry_run(
    fake: FakeSignalWire, topics: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    fake.reset()
    request = recording_forward(topics)
    produce(topics, Topic.FORWARDS, [(request.forward_id, request.to_bytes())] * 2)
    with caplog.at_level(logging.INFO), Running(_loop(topics, store)):
        _handled(topics, 2)

    assert fake.requests == []
    [row] = _forwards(store)
    assert (row["state"], row["provider_sid"], row["attempts"]) == ("dry_run", None, 0)
    dry = [r.getMessage() for r in caplog.records if "dry run" in r.getMessage()]
    assert any(RECORDING_SID in line and CALL_SID in line for line in dry)
