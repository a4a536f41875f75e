"""Failure enrichment, as in the seed's SMS tracker: each failed or undelivered message
is fetched through the SignalWire REST API (`client.messages(sid).fetch()`) and its
error message, date sent, to, from and body kept in `failed_messages`.

Off the main write path: its own consumer group on `events`, its own thread, and the
fetches in a bounded pool, so a slow or failing API only grows this consumer's lag and
never holds up the event writer. Per micro-batch of records, the failed messages among
them, less the SIDs already enriched, are fetched (retried with backoff), inserted in
one insert, and only then are the offsets committed. With no SignalWire credentials the
row holds the callback's own fields, marked `dry_run`.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message
from prometheus_client import Counter, Gauge

from contract.errors import BadCallback
from contract.events import Event
from contract.kinds import CallbackKind
from contract.settings import Settings
from contract.statuses import SMS_FAILED
from contract.topics import Topic, topic_name
from sinks.clickhouse.rows import json_rows
from sinks.clickhouse.store import Store
from sinks.consuming import paused_wait, sink_consumer, until_done
from sinks.signalwire.client import fetch_message, make_client, retrying

logger = logging.getLogger(__name__)

ENRICHED = Counter(
    "switchboard_sink_enrich_total",
    "Failed messages by enrichment outcome (api, dry_run, error, skipped: already enriched)",
    ["outcome"],
)
IN_FLIGHT = Gauge("switchboard_sink_enrich_in_flight", "Message fetches waiting or running")

FAILED_MESSAGE_COLUMNS = (
    "message_sid",
    "message_status",
    "error_code",
    "error_message",
    "date_sent",
    "to",
    "from",
    "body",
    "campaign",
    "received_at",
    "enriched_at",
    "enrichment",
)
# Only records holding one of these are parsed: most events are not failures.
_MARKERS = tuple(f'"{status}"'.encode() for status in SMS_FAILED)
# A batch costs one query and one insert (a part) whatever its size, about 10 ms of
# chDB's CPU: at campaign volume, batches of up to a second of events, not 1,000 records.
_BATCH = 5000
_BATCH_WAIT_S = 1.0
_UNPAUSED_WAIT_S = 5.0  # well inside librdkafka's max.poll.interval.ms (300 s)


class Enricher:
    def __init__(self, settings: Settings, store: Store, *, group: str) -> None:
        self.name = "enrich"
        self.settings = settings
        self.store = store
        self.topic = topic_name(Topic.EVENTS, settings.topic_prefix)
        self._consumer = sink_consumer(settings, group)
        self._pool = ThreadPoolExecutor(settings.enrich_concurrency, thread_name_prefix="enrich")
        self._clients = threading.local()  # one SDK client (one HTTP session) per pool thread
        self._stop = threading.Event()
        self._abort = threading.Event()  # set when the batch in flight is given up
        self._revoked = False

    def stop(self) -> None:
        self._stop.set()
        self._abort.set()

    def run(self) -> None:
        self._consumer.subscribe([self.topic], on_revoke=self._on_revoke)
        mode = "SignalWire REST API" if self.settings.signalwire_configured else "dry run"
        logger.info("enrich consuming %s (%s)", self.topic, mode)
        try:
            while not self._stop.is_set():
                msgs = self._consumer.consume(num_messages=_BATCH, timeout=_BATCH_WAIT_S)
                if not msgs:
                    continue
                self._revoked = False
                failed = self._failed(msgs)
                if failed and not self._enrich(failed):
                    continue  # given up uncommitted: read again (after re-assignment or restart)
                self._commit()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._consumer.close()
            logger.info("enrich stopped")

    def _failed(self, msgs: list[Message]) -> dict[str, Event]:
        """The failed and undelivered SMS events among `msgs`, first one per SID."""
        found: dict[str, Event] = {}
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    logger.warning("enrich: consumer error %s", err)
                continue
            raw = msg.value() or b""
            if not any(marker in raw for marker in _MARKERS):
                continue
            try:
                event = Event.from_bytes(raw)
            except BadCallback:
                continue  # the event writer logs and counts unreadable records
            if event.kind is CallbackKind.SMS and event.status in SMS_FAILED:
                found.setdefault(event.sid, event)
        return found

    def _enrich(self, failed: dict[str, Event]) -> bool:
        done = self._already_enriched(list(failed))
        if done is None:
            return False
        ENRICHED.labels("skipped").inc(len(done))
        for sid in done:
            logger.info("SID: %s already enriched; not fetched again", sid)
        todo = [event for sid, event in failed.items() if sid not in done]
        if not todo:
            return True
        self._abort.clear()
        IN_FLIGHT.inc(len(todo))
        futures = [self._pool.submit(self._row, event) for event in todo]
        try:
            if not self._until_done(futures):
                self._abort.set()  # pool tasks stop retrying; their rows are dropped
                return False
        finally:
            for f in futures:
                if not f.done():
                    f.cancel()
            IN_FLIGHT.dec(len(todo))
        rows = [f.result() for f in futures]
        if any(row is None for row in rows):
            return False
        return self._insert([row for row in rows if row is not None])

    def _until_done(self, futures: list[Future[Any]]) -> bool:
        """Wait for the pool's rows; False if stopped or revoked first. The consumer is
        not paused at first: a pause drops what librdkafka has prefetched (up to
        `queued.max.messages.kbytes`) and the resume fetches it all again, which, paid
        after every batch with a failure in it, cost the broker and this process more
        than the enrichment did. Only a longer wait (the API slow or down) pauses the
        consumer and polls it, to stay in the group past `max.poll.interval.ms`: in
        slices that end as soon as the rows are in, so it is resumed (and refetches)
        once per slice rather than every poll."""
        deadline = time.monotonic() + _UNPAUSED_WAIT_S
        while time.monotonic() < deadline:
            if self._stop.is_set():
                return False
            if not wait(futures, timeout=0.05).not_done:
                return True

        def done() -> bool:
            return all(f.done() for f in futures)

        while not done():
            paused_wait(self._consumer, _UNPAUSED_WAIT_S, lambda: self._interrupted() or done())
            if self._interrupted():
                return False
        return True

    def _interrupted(self) -> bool:
        return self._stop.is_set() or self._revoked

    def _wait(self, seconds: float) -> bool:
        return paused_wait(self._consumer, seconds, self._interrupted)

    def _already_enriched(self, sids: list[str]) -> set[str] | None:
        """SIDs with a row from the API or a dry run (an `error` row is tried again).
        Not FINAL: a SID once enriched is never fetched again, so any such row of it
        means its latest row is one too, and without FINAL the query reads two columns
        of the granules the SIDs fall in instead of merging every column of them."""

        def read() -> set[str]:
            rows = self.store.query(
                f"SELECT DISTINCT message_sid FROM {self.store.table('failed_messages')} "
                "WHERE message_sid IN {sids:Array(String)} AND enrichment != 'error'",
                {"sids": sids},
            )
            return {str(r[0]) for r in rows}

        return until_done(
            "enrich: reading failed_messages", read, wait=self._wait, settings=self.settings
        )

    def _row(self, event: Event) -> dict[str, Any] | None:
        """The failed_messages row of one event (runs in the pool); None if aborted."""
        row: dict[str, Any] = {
            "message_sid": event.sid,
            "message_status": event.status,
            "error_code": event.get("error_code"),
            "error_message": None,
            "date_sent": None,
            "to": event.get("to") or "",
            "from": event.get("from") or "",
            "body": event.get("body"),
            "campaign": event.campaign,
            "received_at": event.received_at,
        }
        client = self._client()
        if client is None:
            logger.info(
                "SID: %s, Status: %s, ErrorCode: %s (dry run: no SignalWire credentials, "
                "stored from the callback)",
                event.sid,
                event.status,
                row["error_code"],
            )
            return row | {"enriched_at": time.time(), "enrichment": "dry_run"}
        result = retrying(
            f"fetch of failed message {event.sid}",
            lambda: fetch_message(client, event.sid),
            settings=self.settings,
            wait=lambda seconds: not self._abort.wait(seconds),
        )
        if result.interrupted:
            return None
        if result.value is None:
            logger.error(
                "SID: %s, Status: %s, ErrorCode: %s: not enriched (%s); stored from the callback",
                event.sid,
                event.status,
                row["error_code"],
                result.error,
            )
            return row | {"enriched_at": time.time(), "enrichment": "error"}
        m = result.value
        logger.info(
            "SID: %s, Status: %s, ErrorCode: %s, ErrorMessage: %s",
            event.sid,
            event.status,
            row["error_code"] or m["error_code"],
            m["error_message"],
        )
        api_error_code = None if m["error_code"] is None else str(m["error_code"])
        return row | {
            "error_code": row["error_code"] or api_error_code,
            "error_message": m["error_message"],
            "date_sent": m["date_sent"].timestamp() if m["date_sent"] else None,
            "to": m["to"] or row["to"],
            "from": m["from_"] or row["from"],
            "body": row["body"] if m["body"] is None else m["body"],
            "enriched_at": time.time(),
            "enrichment": "api",
        }

    def _client(self) -> Any:
        if not hasattr(self._clients, "client"):
            self._clients.client = make_client(self.settings)
        return self._clients.client

    def _insert(self, rows: list[dict[str, Any]]) -> bool:
        payload = json_rows(rows)

        def insert() -> bool:
            self.store.insert_json("failed_messages", FAILED_MESSAGE_COLUMNS, payload)
            return True

        # retried while we hold the offsets
        what = f"enrich: insert of {len(rows)} rows"
        if until_done(what, insert, wait=self._wait, settings=self.settings) is None:
            return False
        for row in rows:
            ENRICHED.labels(row["enrichment"]).inc()
        return True

    def _commit(self) -> None:
        try:
            self._consumer.commit(asynchronous=False)
        except Exception as exc:  # noqa: BLE001 - rows are in; a replay skips enriched SIDs
            logger.warning("enrich: commit failed (%s); records may be read again", exc)

    def _on_revoke(self, consumer: Consumer, partitions: list[Any]) -> None:
        self._revoked = True
