"""Kafka down: the edge answers 503 with Retry-After within the produce timeout and never
a 2xx; once the broker is back, callbacks are accepted again and every 204 is on the topic.

This test stops and restarts a broker, so it has its own (not the session's)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from contract.envelope import Envelope
from contract.kafka import ensure_topics
from contract.settings import Settings
from contract.topics import Topic
from ingest.app import create_app
from switchboard.broker import LocalBroker, free_port
from tests.harness import read_topic, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TIMEOUT_S = 1.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    broker = LocalBroker(tmp_path / "kafka", port=free_port(), heap="384m")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def own(broker: LocalBroker, tmp_path: Path) -> Settings:
    own = Settings(
        _env_file=None,  # type: ignore[call-arg]
        kafka_bootstrap=broker.bootstrap,
        topic_partitions=2,
        data_dir=tmp_path,
        produce_timeout_s=TIMEOUT_S,
    )
    ensure_topics(own, [Topic.CALLBACKS_SMS])
    return own


def sms(i: int) -> dict[str, str]:
    return {"MessageSid": f"SM{i:032d}", "MessageStatus": "sent"}


def test_broker_down_means_503_and_never_2xx_then_accepted_again(
    own: Settings, broker: LocalBroker
) -> None:
    accepted: set[str] = set()
    with TestClient(create_app(own)) as edge:

        def post(i: int) -> int:
            status = edge.post("/callbacks/sms", data=sms(i)).status_code
            if status == 204:
                accepted.add(sms(i)["MessageSid"])
            return status

        # a fresh broker takes a while to give the idempotent producer its id
        wait_for(lambda: post(0) == 204, timeout=60, interval=0.5, what="the first 204")
        assert [post(i) for i in range(1, 5)] == [204] * 4

        broker.stop()
        for i in range(5, 10):
            started = time.monotonic()
            response = edge.post("/callbacks/sms", data=sms(i))
            took = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == str(own.retry_after_s)
            assert response.json()["error"] == "unavailable"
            assert took < TIMEOUT_S + 1.0, f"answered after {took:.1f} s"
        assert edge.get("/readyz").status_code == 503

        broker.start()  # same port, same data
        wait_for(lambda: post(10) == 204, timeout=60, interval=1, what="the edge to accept again")
        assert all(post(i) == 204 for i in range(11, 20))
        assert edge.get("/readyz").status_code == 200

    # Every 204 is on the topic. The 503 ones may be there too: the producer kept them and
    # delivered them late, which the provider's retry then duplicates and later stages
    # count once.
    records = read_topic(own, Topic.CALLBACKS_SMS, expect=len(accepted))
    landed = {Envelope.from_bytes(r.value()).sid for r in records}
    assert accepted <= landed
    assert len(accepted) == 15
