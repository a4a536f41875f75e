"""Reading topic partitions from a start to their current end, before processing begins.

Used to rebuild the intake's per-SID state from its changelog, and to learn which
alerts are already on the alerts topic (so a restart never publishes one twice).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from contract.errors import ServiceUnavailable
from contract.kafka import client_config
from contract.settings import Settings
from contract.topics import Topic, topic_name

logger = logging.getLogger(__name__)

T = TypeVar("T")

_PASSING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
    }
)


def _retried(call: Callable[[], T], what: str, timeout_s: float = 30.0) -> T:
    """`call()`, tried again while Kafka says the error is passing: a restarted broker
    still electing leaders or loading (`ensure_topics` already waits out the same for
    topics it creates)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            passing = isinstance(error, KafkaError) and (
                error.retriable() or error.code() in _PASSING
            )
            if not passing or time.monotonic() > deadline:
                raise
            logger.info("%s: %s; trying again", what, error)
            time.sleep(0.5)


def read_to_end(
    settings: Settings,
    topic: Topic,
    handle: Callable[[Message], None],
    *,
    partitions: set[int] | None = None,
    since: float | None = None,
    timeout_s: float = 300.0,
) -> None:
    """Hand every record of the partitions (all by default) to `handle`, up to their end
    as of now; from the beginning, or from the first record at or after `since`."""
    name = topic_name(topic, settings.topic_prefix)
    consumer = Consumer(
        client_config(settings)
        | {
            "group.id": f"{settings.topic_prefix}switchboard-replay",  # assigns; never commits
            "enable.auto.commit": False,
        }
    )
    try:
        if partitions is None:
            partitions = set(consumer.list_topics(name, timeout=10).topics[name].partitions)
        starts = [TopicPartition(name, p, OFFSET_BEGINNING) for p in sorted(partitions)]
        if since is not None:
            starts = [TopicPartition(name, p, int(since * 1000)) for p in sorted(partitions)]
            starts = _retried(
                lambda: consumer.offsets_for_times(starts, timeout=10), f"finding {name} offsets"
            )
        ends: dict[int, int] = {}
        for tp in starts:
            low, high = _retried(
                partial(consumer.get_watermark_offsets, tp, timeout=10),
                f"reading {name} watermarks",
            )
            if high > low and tp.offset != -1:  # -1: nothing at or after `since`
                ends[tp.partition] = high
        consumer.assign([tp for tp in starts if tp.partition in ends])
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"reading {name} partitions {sorted(ends)} took over {timeout_s:.0f} s"
                )
            for message in consumer.consume(10_000, 0.5):
                if message.error() is not None:
                    logger.warning("reading %s: %s", name, message.error())
                    continue
                handle(message)
            for tp in consumer.position([TopicPartition(name, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
    finally:
        consumer.close()


def published_alert_ids(settings: Settings, since: float) -> set[str]:
    """Ids of the alerts raised since `since`: the window agent will not raise them again."""
    ids: set[str] = set()

    def add_id(message: Message) -> None:
        key = message.key()
        if key:
            ids.add(key.decode())

    read_to_end(settings, Topic.ALERTS, add_id, since=since)
    return ids
