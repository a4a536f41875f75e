"""Sending an SMS exactly once per forward_id: recording and transcription forwards, alerts
(and, the same way, an alert's webhook and Slack deliveries).

Before a send, the `forwards` table is read (FINAL) for the id: a row there (sent,
dry_run or dead) means the request was handled, and a duplicate or replay is dropped.
After the provider accepted the message, the send is recorded at once; the caller
commits the Kafka offset only after that. 429, 5xx and no answer are retried with
backoff; any other 4xx goes to `forwards.dead-letter` with the reason and is recorded
as `dead`, once, with no retry. The dead letter holds the record being handled (the
forward request, or the alert it was made for), so that `switchboard dead-letters
replay` sends that record through the same path again: a replayed record
(`REPLAY_HEADER`) whose forward is recorded `dead` is sent, where a duplicate is not.

The residual window: a crash (SIGKILL, power loss) after the provider accepted the
message and before our insert returned sends it again after the restart. It is narrowed
to one single-row insert: the record follows the provider's answer directly (no
batching, no other work between), a ClickHouse error there is retried in place rather
than by re-reading the request (which would send again), and SIGTERM lets the send and
its record finish. Both log lines carry the forward id and the provider's message SID,
so a duplicate can be traced. The LaML Messages API takes no idempotency key that could
close the window on the provider's side.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import Counter

from contract.deadletters import REPLAY_HEADER, DeadLetter, Reason, Stage
from contract.forwards import ForwardKind, ForwardRequest
from contract.settings import Settings
from contract.topics import Topic, topic_name
from runtime import faults
from runtime.deadletters import DEAD_LETTERS
from runtime.strategies import Wait, until_done
from sinks.clickhouse.rows import json_rows
from sinks.clickhouse.store import Store
from sinks.signalwire.client import Clients, retrying, send_sms

logger = logging.getLogger(__name__)

SMS = Counter(
    "switchboard_sink_sms_total",
    "SMS requests by kind and outcome (sent, dry_run, dead, duplicate)",
    ["kind", "outcome"],
)


DELIVERIES = Counter(
    "switchboard_sink_alert_deliveries_total",
    "Alert notifications over HTTP by channel (webhook, slack) and outcome (sent, dead, duplicate)",
    ["channel", "outcome"],
)
_SMS_KINDS = frozenset({ForwardKind.RECORDING, ForwardKind.TRANSCRIPTION, ForwardKind.ALERT})


class State(StrEnum):
    SENT = "sent"
    DRY_RUN = "dry_run"  # no SignalWire credentials: recorded, not sent
    DEAD = "dead"  # refused by the provider, or retries exhausted: on the dead-letter topic


FORWARD_COLUMNS = (
    "forward_id",
    "kind",
    "to",
    "from",
    "body",
    "call_sid",
    "state",
    "provider_sid",
    "attempts",
    "error",
    "requested_at",
    "updated_at",
)


def is_replay(msg: Message) -> bool:
    """Whether `msg` was put back on its topic by `switchboard dead-letters replay`."""
    headers = msg.headers() or {}
    return REPLAY_HEADER in (headers if isinstance(headers, dict) else dict(headers))


class Dispatcher:
    """`stage`: the consumer it sends for (its dead letters say so)."""

    def __init__(self, settings: Settings, store: Store, producer: Producer, stage: Stage) -> None:
        self.settings = settings
        self.store = store
        self.stage = stage
        self._clients = Clients(settings)
        self._drop_texts = settings.retention_texts_days == 0
        self._producer = producer
        self._dead_letter_topic = topic_name(Topic.FORWARDS_DEAD_LETTER, settings.topic_prefix)
        self._retry = {
            "retry_base_s": settings.rest_retry_base_s,
            "retry_max_s": settings.sink_retry_max_s,
        }

    def dispatch(
        self,
        request: ForwardRequest,
        wait: Wait,
        send: Callable[[], str] | None = None,
        *,
        source: Message,
    ) -> State | None:
        """Send `request` (made from the record `source`) unless it was handled before:
        as an SMS, or by `send` (an alert's webhook, whose answer is the receipt
        recorded). None if it gave up because the caller is stopping, with nothing sent
        since the last record: read it again."""
        fid, kind = request.forward_id, request.kind.value
        found = self._recorded_state(fid, wait)
        if found is None:
            return None
        if found == State.DEAD and is_replay(source):
            logger.info("%s forward %s was dead-lettered; replayed, so sent again", kind, fid)
        elif found:
            _count(kind, "duplicate")
            logger.info("%s forward %s already %s; not sent again", kind, fid, found)
            return State(found)
        if send is None:
            client = self._clients.for_account(request.account)  # None: dry run
            if client is None:
                logger.warning(
                    "dry run (no SignalWire credentials): %s forward %s CallSid %s recorded, "
                    "not sent",
                    kind,
                    fid,
                    request.call_sid or "-",
                )
                return self._record(request, State.DRY_RUN, attempts=0, wait=wait)

            def send() -> str:
                return send_sms(client, from_=request.from_, to=request.to, body=request.body)

        logger.info("sending %s forward %s CallSid %s", kind, fid, request.call_sid or "-")
        result = retrying(f"{kind} forward {fid}", send, settings=self.settings, wait=wait)
        if result.interrupted:
            return None
        if result.error is None:
            logger.info(
                "%s forward %s accepted by SignalWire as %s (CallSid %s, %d tries)",
                kind,
                fid,
                result.value,
                request.call_sid or "-",
                result.attempts,
            )
            faults.reach("dispatch:after-send")
            return self._record(
                request, State.SENT, attempts=result.attempts, provider_sid=result.value, wait=wait
            )
        error = str(result.error)
        reason = Reason.PROVIDER_UNAVAILABLE if result.error.retryable else Reason.FORWARD_REJECTED
        message = f"{kind} forward {fid} to {request.to}: {error} ({result.attempts} tries)"
        if not self.dead_letter_record(source, message, wait, reason):
            return None
        logger.error(
            "%s forward %s dead-lettered after %d tries: %s", kind, fid, result.attempts, error
        )
        return self._record(request, State.DEAD, attempts=result.attempts, error=error, wait=wait)

    def dead_letter_record(
        self, msg: Message, message: str, wait: Wait, reason: Reason = Reason.HANDLER_FAILED
    ) -> bool:
        """Put the record `msg` (of the forwards or alerts topic), that cannot be sent, on
        forwards.dead-letter and wait for Kafka's acknowledgement; retried while Kafka
        does not take it. False if the caller is stopping first. Its default reason is the
        runtime's: handling it kept raising."""
        key = (msg.key() or b"").decode(errors="replace") or None
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None  # consumed
        letter = DeadLetter.of(
            msg.value() or b"",
            reason=reason,
            message=message,
            stage=self.stage,
            topic=Topic(topic.removeprefix(self.settings.topic_prefix)),
            partition=partition,
            offset=offset,
            key=key,
            sid=key,  # forwards are keyed by forward id, alerts by alert id
            at=time.time(),
        )

        def produce() -> bool:
            errors: list[KafkaError] = []

            def delivered(err: KafkaError | None, _msg: object) -> None:
                if err is not None:
                    errors.append(err)

            self._producer.produce(
                self._dead_letter_topic,
                key=letter.letter_id.encode(),
                value=letter.to_bytes(),
                on_delivery=delivered,
            )
            if self._producer.flush(30):
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "not acknowledged in 30 s"))
            if errors:
                raise KafkaException(errors[0])
            return True

        what = f"dead letter {letter.letter_id} ({reason}) for {key or '-'}"
        if until_done(what, produce, wait=wait, **self._retry) is None:
            return False
        DEAD_LETTERS.labels(self.stage, reason).inc()
        return True

    def _recorded_state(self, forward_id: str, wait: Wait) -> str | None:
        """The recorded state ('' if none); None if ClickHouse did not answer before a stop."""

        def read() -> str:
            rows = self.store.query(
                f"SELECT state FROM {self.store.table('forwards')} FINAL "
                "WHERE forward_id = {id:String}",
                {"id": forward_id},
            )
            return str(rows[0][0]) if rows else ""

        # never send without knowing
        what = f"reading forwards for {forward_id}"
        return until_done(what, read, wait=wait, **self._retry)

    def _record(
        self,
        request: ForwardRequest,
        state: State,
        *,
        attempts: int,
        wait: Wait,
        provider_sid: str | None = None,
        error: str | None = None,
    ) -> State | None:
        row = {
            "forward_id": request.forward_id,
            "kind": request.kind.value,
            "to": request.to,
            "from": request.from_,
            # a transcription's SMS holds what the caller said, and their number
            "body": ""
            if self._drop_texts and request.kind is ForwardKind.TRANSCRIPTION
            else request.body,
            "call_sid": request.call_sid,
            "state": state.value,
            "provider_sid": provider_sid,
            "attempts": attempts,
            "error": error,
            "requested_at": request.requested_at,
            "updated_at": time.time(),
        }
        payload = json_rows([row])

        def insert() -> State:
            self.store.insert_json("forwards", FORWARD_COLUMNS, payload)
            return state

        # Retried in place: re-reading the request would send again. After a send, a
        # revocation does not end the retries (the partition's next owner would send it
        # again if it found no record); only a stop does.
        what = f"recording {request.kind.value} forward {request.forward_id} as {state.value}"
        held = state is State.SENT

        def backoff(seconds: float) -> bool:
            return wait(seconds, through_revocation=held)

        recorded = until_done(what, insert, wait=backoff, **self._retry)
        if recorded is None:
            if state is State.SENT:
                logger.error(
                    "stopping: %s forward %s was sent as %s but is not recorded; "
                    "it will be sent again",
                    request.kind.value,
                    request.forward_id,
                    provider_sid,
                )
            return None
        _count(request.kind.value, state.value)
        return recorded


def _count(kind: str, outcome: str) -> None:
    """SMS by kind; an alert's webhook deliveries by channel."""
    if kind in _SMS_KINDS:
        SMS.labels(kind, outcome).inc()
    else:
        DELIVERIES.labels(kind.removeprefix("alert_"), outcome).inc()
