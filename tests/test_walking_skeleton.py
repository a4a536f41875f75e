"""A callback travels from HTTP through real Kafka and faust into ClickHouse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from contract.settings import Settings
from contract.topics import Topic
from ingest.app import create_app
from runtime.consumer import ConsumerRuntime
from sinks.clickhouse.store import Store
from tests.harness import Stage, read_topic, wait_for
from tests.harness import event_writer as running_event_writer

pytestmark = pytest.mark.kafka

SMS = {
    "MessageSid": "SM00000000000000000000000000000001",
    "MessageStatus": "undelivered",
    "ErrorCode": "30003",
    "AccountSid": "AC00000000000000000000000000000001",
    "From": "+15550001111",
    "To": "+15550002222",
    "Body": "Spring sale: 20% off, reply STOP to opt out",
    "NumMedia": "0",
    "NumSegments": "1",
}


@pytest.fixture
def topics(topics: Settings) -> Settings:
    """Texts kept for a month: this checks that every parameter lands, the body too (that
    texts are dropped by default is tests/test_privacy.py's)."""
    return topics.model_copy(update={"retention_texts_days": 30})


@pytest.fixture
def edge(topics: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(topics)) as client:
        yield client


@pytest.fixture
def processors(topics: Settings, tmp_path: Path) -> Iterator[Stage]:
    stage = Stage("process", topics, tmp_path).start()
    yield stage
    stage.terminate()


@pytest.fixture
def event_writer(topics: Settings, store: Store) -> Iterator[ConsumerRuntime]:
    with running_event_writer(topics, store) as writer:
        yield writer


def test_sms_callback_is_acknowledged_after_kafka_has_it(
    edge: TestClient, topics: Settings
) -> None:
    response = edge.post("/callbacks/sms?campaign=spring-sale", data=SMS)
    assert response.status_code == 204

    [record] = read_topic(topics, Topic.CALLBACKS_SMS, expect=1)
    assert record.key() == SMS["MessageSid"].encode()
    envelope = orjson.loads(record.value())
    assert envelope["v"] == 2
    assert envelope["format"] == "compat"
    assert "body" not in envelope  # a form's parameters are its body
    assert envelope["kind"] == "sms"
    assert envelope["params"] == SMS
    assert envelope["tags"] == {"campaign": "spring-sale"}
    assert envelope["signature"] == "unchecked"
    assert envelope["received_at"] > 1.7e9


def test_sms_callback_lands_in_clickhouse_with_every_parameter(
    edge: TestClient, processors: Stage, event_writer: ConsumerRuntime, store: Store
) -> None:
    assert edge.post("/callbacks/sms?campaign=spring-sale", data=SMS).status_code == 204

    rows = wait_for(
        lambda: store.query_dicts(f"SELECT * FROM {store.table('sms_events')} FINAL"),
        timeout=60,
        what=f"the row in sms_events; processor log:\n{processors.log()[-2000:]}",
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["message_sid"] == SMS["MessageSid"]
    assert row["message_status"] == "undelivered"
    assert row["error_code"] == "30003"
    assert row["account_sid"] == SMS["AccountSid"]
    assert row["from"] == SMS["From"]
    assert row["to"] == SMS["To"]
    assert row["body"] == SMS["Body"]
    assert row["num_media"] == 0
    assert row["num_segments"] == 1
    assert row["campaign"] == "spring-sale"
    assert row["received_at"].year >= 2024
