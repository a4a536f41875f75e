"""The processors' view of the silences: read to the end at start, then followed.

A reader with no consumer group (it assigns every partition and commits nothing,
like `switchboard tail`): every worker needs every silence, whatever partitions of
the other topics it holds.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from contract.kafka import rdkafka_logger
from contract.settings import Settings
from contract.silences import Silences
from contract.topics import Topic, topic_name
from processors.replay import read_to_end

logger = logging.getLogger(__name__)


def apply(silences: Silences, message: Message) -> None:
    try:
        silences.apply(message.key(), message.value())
    except (ValueError, KeyError, TypeError) as exc:  # orjson's errors are ValueErrors
        logger.error("skipped an unreadable silence at offset %d: %s", message.offset(), exc)


def load(settings: Settings) -> Silences:
    """Every silence on the topic now; then `follow` keeps it current."""
    silences = Silences()
    read_to_end(settings, Topic.SILENCES, lambda m: apply(silences, m))
    logger.info("%d silences on record", len(silences.by_id))
    return silences


def follow(settings: Settings, silences: Silences) -> threading.Thread:
    """A daemon thread that applies each new silence or removal as it arrives."""
    name = topic_name(Topic.SILENCES, settings.topic_prefix)

    def run() -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": f"{settings.topic_prefix}switchboard-silences",  # assigns only
                "enable.auto.commit": False,
                "logger": rdkafka_logger,
            }
        )
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in partitions])
        while True:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                apply(silences, message)

    thread = threading.Thread(target=run, name="silences", daemon=True)
    thread.start()
    return thread
