"""Failure enrichment, as in the seed's SMS tracker: each failed or undelivered message
is fetched through the SignalWire REST API (`client.messages(sid).fetch()`) and its
error message, date sent, to, from and body kept in `failed_messages`.

Off the main write path: its own consumer group on `events`, its own thread, and the
fetches in a bounded pool, so a slow or failing API only grows this consumer's lag and
never holds up the event writer. It is a `Batching` strategy on the consumer runtime:
per batch of records, the failed messages among them, less the SIDs already enriched,
are fetched (each retried with backoff), inserted in one insert, and only then are the
offsets committed. With no SignalWire credentials the row holds the callback's own
fields, marked `dry_run`.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from confluent_kafka import Message
from prometheus_client import Counter, Gauge

from contract.errors import BadCallback
from contract.events import Event
from contract.kafka import sink_consumer_config
from contract.kinds import CallbackKind
from contract.privacy import Redactor
from contract.settings import Settings
from contract.statuses import SMS_FAILED
from contract.topics import Topic, topic_name
from runtime.consumer import ConsumerRuntime
from runtime.strategies import Abandoned, Batching
from sinks.clickhouse.rows import json_rows
from sinks.clickhouse.store import Store
from sinks.signalwire.client import Clients, fetch_message, retrying

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
_BATCH_ROWS = 5000
_BATCH_AGE_S = 1.0


def enricher(settings: Settings, store: Store, *, group: str) -> ConsumerRuntime:
    mode = "SignalWire REST API" if settings.signalwire_configured else "dry run"
    own = [sid for sid in settings.accounts if settings.for_account(sid).signalwire_configured]
    logger.info(
        "enrichment of failed messages through the %s (accounts with their own: %s)",
        mode,
        ", ".join(own) or "none",
    )
    return ConsumerRuntime(
        settings,
        name="enrich",
        group=group,
        topics=[topic_name(Topic.EVENTS, settings.topic_prefix)],
        batch_size=_BATCH_ROWS,
        config=sink_consumer_config(settings),
        strategy=lambda runtime: Batching(
            runtime,
            Enrichment(settings, store, runtime.sleep),
            max_rows=_BATCH_ROWS,
            age_s=_BATCH_AGE_S,
            retry_max_s=settings.sink_retry_max_s,
        ),
    )


class FailedBatch:
    """The failed and undelivered SMS events of a batch, first one per SID; then their
    rows, kept once fetched so that a retried insert does not fetch them again."""

    __slots__ = ("events", "rows")

    def __init__(self) -> None:
        self.events: dict[str, Event] = {}
        self.rows: list[dict[str, Any]] | None = None


class Enrichment:
    def __init__(self, settings: Settings, store: Store, sleep: Any) -> None:
        self.settings = settings
        self.store = store
        self._sleep = sleep  # False once the runtime gives the batch up
        self._pool = ThreadPoolExecutor(settings.enrich_concurrency, thread_name_prefix="enrich")
        self._clients = threading.local()  # SDK clients (HTTP sessions) per pool thread
        self._redactor = Redactor.from_settings(settings)

    def new(self) -> FailedBatch:
        return FailedBatch()

    def add(self, batch: FailedBatch, records: list[Message]) -> int:
        found = batch.events
        before = len(found)
        for msg in records:
            raw = msg.value() or b""
            if not any(marker in raw for marker in _MARKERS):
                continue
            try:
                event = Event.from_bytes(raw)
            except BadCallback:
                continue  # the event writer logs and counts unreadable records
            if event.kind is CallbackKind.SMS and event.status in SMS_FAILED:
                found.setdefault(event.sid, event)
        return len(found) - before

    def write(self, batch: FailedBatch) -> None:
        if batch.rows is None:
            batch.rows = self._rows(batch.events)
        if batch.rows:
            self.store.insert_json("failed_messages", FAILED_MESSAGE_COLUMNS, json_rows(batch.rows))
            for row in batch.rows:
                ENRICHED.labels(row["enrichment"]).inc()
        batch.rows = []

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _rows(self, failed: dict[str, Event]) -> list[dict[str, Any]]:
        if not failed:
            return []
        done = self._already_enriched(list(failed))
        ENRICHED.labels("skipped").inc(len(done))
        for sid in done:
            logger.info("SID: %s already enriched; not fetched again", sid)
        todo = [event for sid, event in failed.items() if sid not in done]
        IN_FLIGHT.inc(len(todo))
        try:
            futures = [self._pool.submit(self._row, event) for event in todo]
            wait(futures)
        finally:
            IN_FLIGHT.dec(len(todo))
        rows = [f.result() for f in futures]
        if any(row is None for row in rows):
            raise Abandoned("enrichment interrupted")
        return [row for row in rows if row is not None]

    def _already_enriched(self, sids: list[str]) -> set[str]:
        """SIDs with a row from the API or a dry run (an `error` row is tried again).
        Not FINAL: a SID once enriched is never fetched again, so any such row of it
        means its latest row is one too, and without FINAL the query reads two columns
        of the granules the SIDs fall in instead of merging every column of them."""
        rows = self.store.query(
            f"SELECT DISTINCT message_sid FROM {self.store.table('failed_messages')} "
            "WHERE message_sid IN {sids:Array(String)} AND enrichment != 'error'",
            {"sids": sids},
        )
        return {str(r[0]) for r in rows}

    def _row(self, event: Event) -> dict[str, Any] | None:
        """The failed_messages row of one event (runs in the pool); None if aborted.
        Numbers and the body from the API are redacted as the event's were."""
        row = self._fetched(event)
        if row is None or self._redactor is None:
            return row
        redact = self._redactor
        return row | {
            "to": redact.number(row["to"]),
            "from": redact.number(row["from"]),
            "body": redact.text(row["body"]),
        }

    def _fetched(self, event: Event) -> dict[str, Any] | None:
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
        client = self._client(event.get("account_sid"))
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
            wait=self._sleep,
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

    def _client(self, account_sid: str | None) -> Any:
        """The client with the credentials of the message's account."""
        if not hasattr(self._clients, "by_account"):
            self._clients.by_account = Clients(self.settings)
        return self._clients.by_account.for_account(account_sid)
