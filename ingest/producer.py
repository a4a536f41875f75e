"""An asyncio face on confluent-kafka's producer: `await send()` returns once the
broker has acknowledged the record (acks=all, idempotent), or raises.

librdkafka batches records from many concurrent requests, so awaiting each
delivery report costs little throughput; a thread serves the delivery callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from contract.errors import DeliveryFailed

logger = logging.getLogger(__name__)


class AsyncProducer:
    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer(config)
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.05)

    async def send(self, topic: str, key: bytes, value: bytes, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            loop.call_soon_threadsafe(_settle, done, err)

        try:
            self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
        except BufferError:
            raise DeliveryFailed(
                "local produce queue is full", topic=topic, key=key.decode()
            ) from None
        except KafkaException as exc:
            raise DeliveryFailed(str(exc), topic=topic, key=key.decode()) from None
        try:
            await asyncio.wait_for(done, timeout_s)
        except TimeoutError:
            # The record may still be delivered later; the provider's retry is then a
            # duplicate, which every stage behind us counts once.
            raise DeliveryFailed(
                f"no acknowledgement within {timeout_s} s", topic=topic, key=key.decode()
            ) from None

    def reachable(self, timeout_s: float = 1.0) -> bool:
        try:
            md = self._producer.list_topics(timeout=timeout_s)
        except KafkaException:
            return False
        return bool(md.brokers)

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush what is in flight, stop polling; returns records left undelivered."""
        remaining = self._producer.flush(timeout_s)
        self._closing.set()
        self._poller.join(timeout=2)
        if remaining:
            logger.error("%d records were not acknowledged before shutdown", remaining)
        return int(remaining)


def _settle(done: asyncio.Future[None], err: KafkaError | None) -> None:
    if done.done():
        return  # the request already timed out
    if err is None:
        done.set_result(None)
    else:
        done.set_exception(DeliveryFailed(err.str(), topic="?"))
