"""Raw callbacks to normalized events: one agent per kind.

Each raw record becomes one `Event` on the events topic (keyed by SID, so one
entity stays ordered), or, if it cannot be read, a dead-letter record with the
reason; the stream goes on either way.
"""

from __future__ import annotations

import logging

import faust
import orjson

from contract.envelope import Envelope
from contract.errors import BadCallback
from contract.events import Event
from contract.kinds import CallbackKind
from contract.normalize import normalize
from processors import metrics
from processors.app import Topics

logger = logging.getLogger(__name__)


def dead_letter_record(kind: CallbackKind, raw: bytes, reason: str) -> bytes:
    return orjson.dumps(
        {"kind": kind.value, "reason": reason, "raw": raw.decode("utf-8", errors="replace")}
    )


def register(app: faust.App, topics: Topics) -> None:
    for kind, raw_topic in topics.raw.items():
        _register_kind(app, topics, kind, raw_topic)


def _register_kind(
    app: faust.App, topics: Topics, kind: CallbackKind, raw_topic: faust.TopicT
) -> None:
    async def normalize_kind(stream: faust.StreamT[bytes]) -> None:
        async for raw in stream:
            try:
                event: Event = normalize(Envelope.from_bytes(raw))
            except BadCallback as exc:
                metrics.DEAD_LETTERED.labels(kind.value).inc()
                logger.warning(
                    "dead-lettered %s callback sid=%s: %s", kind, exc.sid or "-", exc.reason
                )
                await topics.dead_letter.send(
                    key=None, value=dead_letter_record(kind, raw, exc.reason)
                )
                continue
            metrics.EVENTS.labels(kind.value).inc()
            logger.debug("normalized %s sid=%s status=%s", kind, event.sid, event.status)
            await topics.events.send(key=event.sid.encode(), value=event.to_bytes())

    app.agent(raw_topic, name=f"normalize-{kind.value}", concurrency=1)(normalize_kind)
