"""A fatal librdkafka error ends the edge's producer: sends fail fast (the edge answers
503, the provider retries) and readiness says so, instead of ready with a dead producer."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import KafkaError

from contract.errors import DeliveryFailed
from ingest.producer import AsyncProducer

NOWHERE = {"bootstrap.servers": "127.0.0.1:9", "socket.connection.setup.timeout.ms": 1000}


def test_a_fatal_error_stops_sends_and_readiness() -> None:
    async def scenario() -> None:
        producer = AsyncProducer(NOWHERE)
        try:
            producer._on_error(KafkaError(KafkaError._TRANSPORT, "broker down"))
            assert producer.fatal is None  # passing errors leave it working
            producer._on_error(KafkaError(KafkaError._FATAL, "sequence lost", fatal=True))
            assert not producer.reachable(timeout_s=0.1)
            with pytest.raises(DeliveryFailed, match="fatal producer error"):
                await producer.send("t", b"k", b"v", timeout_s=1.0)
        finally:
            producer.close(timeout_s=0.1)

    asyncio.run(scenario())
