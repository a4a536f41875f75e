"""The forwards consumer: ForwardRequests (recording and transcription forwards) to SMS.

Requests are keyed by forward_id, so duplicates of one request stay on one partition
and reach one dispatcher in order; the dispatcher's record in `forwards` turns them,
and replays after a restart, into no-ops.
"""

from __future__ import annotations

import logging

import orjson
from confluent_kafka import Message, Producer

from contract.forwards import ForwardRequest
from contract.settings import Settings
from contract.topics import Topic, topic_name
from sinks.clickhouse.store import Store
from sinks.consuming import RecordLoop
from sinks.signalwire.dispatch import Dispatcher, Wait

logger = logging.getLogger(__name__)


def forwards_loop(
    settings: Settings, store: Store, producer: Producer, *, group: str
) -> RecordLoop:
    dispatcher = Dispatcher(settings, store, producer)

    def handle(msg: Message, wait: Wait) -> bool:
        raw = msg.value() or b""
        try:
            request = ForwardRequest.from_bytes(raw)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            key = (msg.key() or b"").decode(errors="replace") or None
            logger.error(
                "unreadable forward request %s at %s[%d]@%d (%s); dead-lettered",
                key or "-",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                exc,
            )
            record = {
                "forward_id": key,
                "reason": f"unreadable forward request: {exc}",
                "raw": raw.decode(errors="replace"),
            }
            return dispatcher.dead_letter(key, record, wait)
        return dispatcher.dispatch(request, wait) is not None

    return RecordLoop(
        settings,
        group=group,
        topic=topic_name(Topic.FORWARDS, settings.topic_prefix),
        handler=handle,
        name="forwards",
    )
