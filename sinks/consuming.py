"""Kafka consuming for the sinks that act on one record at a time (SMS forwards, alerts).

`RecordLoop` hands each record to a handler and commits its offset only after the
handler has finished with it (recorded its effect), so a crash re-delivers the record
and the handler's own idempotency key (forward_id, alert_id) makes the replay a no-op.
A handler that must wait (backoff) calls `wait`, which keeps the consumer in its group
and returns False when the loop is stopping or the record's partition was revoked:
the handler then gives up without recording, and the record is read again later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from contract.kafka import consumer_config
from contract.settings import Settings
from sinks import faults

logger = logging.getLogger(__name__)

# Handles one record; returns False when it gave up (stopping), so the offset stays.
Handler = Callable[[Message, Callable[[float], bool]], bool]
T = TypeVar("T")


def sink_consumer(settings: Settings, group: str) -> Consumer:
    """A consumer of the sink process; a killed sink's partitions move on after
    `sink_session_timeout_ms`, a stopped one's at once (it leaves the group)."""
    return Consumer(
        consumer_config(
            settings,
            group,
            **{
                "session.timeout.ms": settings.sink_session_timeout_ms,
                # librdkafka's 1 MiB per partition per fetch held the writer to about
                # 170,000 records/s, waiting on the broker; 10 MiB lets one fetch fill
                # most of a batch (bench/sink: consume alone then runs at 500,000/s+).
                "max.partition.fetch.bytes": 10 * 1024 * 1024,
                "queued.min.messages": 200_000,
            },
        )
    )


def paused_wait(consumer: Consumer, seconds: float, interrupted: Callable[[], bool]) -> bool:
    """Sleep while staying in the group: the assignment is paused and polled (paused
    partitions return nothing). False if `interrupted()` turned true meanwhile."""
    assignment = consumer.assignment()
    consumer.pause(assignment)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if interrupted():
                return False
            consumer.poll(min(0.1, max(0.0, end - time.monotonic())))
        return not interrupted()
    finally:
        # after a rebalance inside poll() some of these may be gone; resume what is ours
        current = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        consumer.resume([tp for tp in assignment if (tp.topic, tp.partition) in current])


def until_done(
    what: str, attempt: Callable[[], T], *, wait: Callable[[float], bool], settings: Settings
) -> T | None:
    """`attempt()` until it returns, for a step the record cannot be acknowledged
    without (ClickHouse or Kafka down): each error is logged with `what`, then waited
    out with exponential backoff (`rest_retry_base_s`, doubling, capped by
    `sink_retry_max_s`). None if `wait` gives up first (stopping, or the partition was
    revoked): the caller then leaves its record unacknowledged, to be read again."""
    backoff = settings.rest_retry_base_s
    while True:
        try:
            return attempt()
        except Exception as exc:  # noqa: BLE001 - retried until it works or we stop
            logger.error("%s failed (%s); retrying in %.1f s", what, exc, backoff)
            if not wait(backoff):
                return None
            backoff = min(backoff * 2, settings.sink_retry_max_s)


class RecordLoop:
    def __init__(
        self, settings: Settings, *, group: str, topic: str, handler: Handler, name: str
    ) -> None:
        self.name = name
        self.topic = topic
        self.handler = handler
        self._consumer = sink_consumer(settings, group)
        self._stop = threading.Event()
        self._revoked = False

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        self._consumer.subscribe([self.topic], on_revoke=self._on_revoke)
        logger.info("%s consuming %s", self.name, self.topic)
        try:
            while not self._stop.is_set():
                msg = self._consumer.poll(0.2)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        logger.warning("%s: consumer error %s", self.name, err)
                    continue
                self._revoked = False
                if not self._handle(msg):
                    logger.info(
                        "%s: left %s[%d]@%d unacknowledged; it will be read again",
                        self.name,
                        msg.topic(),
                        msg.partition(),
                        msg.offset(),
                    )
                    self._rewind(msg)  # so a later commit cannot acknowledge it
                    continue
                faults.reach(f"{self.name}:after-handle")
                self._commit(msg)
        finally:
            self._consumer.close()
            logger.info("%s stopped", self.name)

    def _handle(self, msg: Message) -> bool:
        """The handler's verdict; an unexpected error is logged and the record tried
        again after a pause (it is not acknowledged), rather than ending the loop."""
        backoff = 1.0
        while True:
            try:
                return self.handler(msg, self._wait)
            except Exception:
                logger.exception(
                    "%s: handling %s[%d]@%d failed; trying again in %.0f s",
                    self.name,
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                    backoff,
                )
                if not self._wait(backoff):
                    return False
                backoff = min(backoff * 2, 60.0)

    def _wait(self, seconds: float) -> bool:
        return paused_wait(self._consumer, seconds, lambda: self._stop.is_set() or self._revoked)

    def _commit(self, msg: Message) -> None:
        try:
            self._consumer.commit(
                offsets=[TopicPartition(msg.topic(), msg.partition(), msg.offset() + 1)],
                asynchronous=False,
            )
        except Exception as exc:  # noqa: BLE001 - the effect is recorded; a replay is a no-op
            logger.warning("%s: commit failed (%s); the record may be read again", self.name, exc)

    def _rewind(self, msg: Message) -> None:
        if self._stop.is_set():
            return
        try:
            self._consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
        except Exception:  # noqa: BLE001 - revoked: the re-assignment starts from the commit
            logger.debug("%s: %s[%d] not ours any more", self.name, msg.topic(), msg.partition())

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._revoked = True
