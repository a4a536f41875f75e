"""The processors' view of the silences: read to the end at start, then followed.

A reader with no consumer group (it assigns every partition and commits nothing,
like `switchboard tail`): every worker needs every silence, whatever partitions of
the other topics it holds.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from contract.kafka import consumer_config
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

    def follow_forever() -> None:
        # assigns every partition, commits nothing: the group id is only required
        group = f"{settings.topic_prefix}switchboard-silences"
        consumer = Consumer(consumer_config(settings, group))
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in partitions])
        while True:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                apply(silences, message)

    def run() -> None:
        try:
            follow_forever()
        except Exception:
            # silences made from now on would not be applied: the stage must say so
            logger.exception("stopped following %s; new silences are not applied", name)
            raise

    thread = threading.Thread(target=run, name="silences", daemon=True)
    thread.start()
    return thread
