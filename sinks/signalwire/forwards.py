"""The forwards consumer: ForwardRequests (recording and transcription forwards) to SMS.

Requests are keyed by forward_id, so duplicates of one request stay on one partition
and reach one dispatcher in order; the dispatcher's record in `forwards` turns them,
and replays after a restart, into no-ops.
"""

from __future__ import annotations

import logging

import orjson
from confluent_kafka import Message, Producer

from contract.deadletters import Reason, Stage
from contract.forwards import ForwardRequest
from contract.kafka import sink_consumer_config
from contract.settings import Settings
from contract.topics import Topic, topic_name
from runtime.consumer import ConsumerRuntime
from runtime.strategies import Wait, describe, per_record
from sinks.clickhouse.store import Store
from sinks.signalwire.dispatch import Dispatcher

logger = logging.getLogger(__name__)


def forwards_consumer(
    settings: Settings, store: Store, producer: Producer, *, group: str
) -> ConsumerRuntime:
    dispatcher = Dispatcher(settings, store, producer, Stage.FORWARDS)

    def handle(msg: Message, wait: Wait) -> bool:
        try:
            request = ForwardRequest.from_bytes(msg.value() or b"")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            logger.error("unreadable forward request %s (%s); dead-lettered", describe(msg), exc)
            message = f"unreadable forward request: {exc}"
            return dispatcher.dead_letter_record(msg, message, wait, Reason.UNREADABLE_RECORD)
        return dispatcher.dispatch(request, wait, source=msg) is not None

    return per_record(
        settings,
        name=Stage.FORWARDS,
        group=group,
        topic=topic_name(Topic.FORWARDS, settings.topic_prefix),
        handler=handle,
        dead_letter=dispatcher.dead_letter_record,
        config=sink_consumer_config(settings),
    )
