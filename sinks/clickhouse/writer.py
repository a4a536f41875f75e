"""The ClickHouse writer: Kafka records in, batched inserts out, then commit.

Batches close by size or by time. Offsets are committed only after the insert
succeeded; on a ClickHouse error the batch is retried with backoff while the
consumer is paused (it keeps polling, so the group does not evict it). A crash
between insert and commit re-delivers the batch, and the ReplacingMergeTree
keys make the second copy invisible in FINAL queries.

Stopped (SIGTERM) or revoked while ClickHouse is down, the writer drops the rows
it holds without committing them: they are read again from the committed offset
(by the next owner of the partition, or by us after the eager re-assignment that
librdkafka's default assignors do).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Message
from prometheus_client import Counter, Histogram

from contract.settings import Settings
from contract.topics import Topic, topic_name
from sinks import faults
from sinks.clickhouse.store import Store
from sinks.consuming import paused_wait, sink_consumer

logger = logging.getLogger(__name__)

ROWS_WRITTEN = Counter("switchboard_sink_rows_total", "Rows written to ClickHouse", ["table"])
BATCH_ROWS = Histogram(
    "switchboard_sink_batch_rows",
    "Rows per ClickHouse insert batch",
    buckets=(1, 10, 100, 1000, 5000, 20000, 50000, 100000),
)
INSERT_SECONDS = Histogram("switchboard_sink_insert_seconds", "Time of one batch insert")
INSERT_ERRORS = Counter("switchboard_sink_insert_errors_total", "Failed batch inserts", ["table"])
BAD_RECORDS = Counter(
    "switchboard_sink_bad_records_total", "Records that could not be read", ["topic"]
)
BAD_ROWS = Counter(
    "switchboard_sink_bad_rows_total", "Rows ClickHouse could not read, dropped", ["table"]
)


@dataclass(frozen=True, slots=True)
class Row:
    table: str
    columns: tuple[str, ...]
    values: dict[str, Any] | bytes  # bytes: already one JSON object


def json_rows(rows: list[dict[str, Any] | bytes]) -> bytes:
    return b"\n".join(r if isinstance(r, bytes) else orjson.dumps(r) for r in rows)


# ClickHouse's codes for input it cannot read (CANNOT_PARSE_*, TYPE_MISMATCH, ...): the
# rows are at fault, not the store, and retrying the same batch would fail forever.
_UNREADABLE = frozenset({6, 26, 27, 32, 33, 38, 41, 53, 69, 70, 72, 117, 321})
_CODE = re.compile(r"Code: (\d+)\.")


def unreadable(exc: Exception) -> bool:
    found = _CODE.search(str(exc))
    return found is not None and int(found.group(1)) in _UNREADABLE


# Turns one Kafka record into rows; raises ValueError-like errors for bad records.
RowMapper = Callable[[bytes], Iterable[Row]]


class BatchWriter:
    """Consumes `topics`, maps records to rows with `mapper`, writes them in batches."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        group: str,
        topics: list[str],
        mapper: RowMapper,
        name: str,
    ) -> None:
        self.settings = settings
        self.store = store
        self.mapper = mapper
        self.name = name
        self.topics = topics
        self._consumer = sink_consumer(settings, group)
        self._stop = threading.Event()
        self._batch: dict[str, list[dict[str, Any] | bytes]] = defaultdict(list)
        self._columns: dict[str, tuple[str, ...]] = {}
        self._pending = 0
        self._flushing = False
        self._revoked = False

    @classmethod
    def for_topic(
        cls,
        settings: Settings,
        store: Store,
        topic: Topic,
        *,
        group: str,
        name: str,
        mapper: RowMapper,
    ) -> BatchWriter:
        """One of our topics under the deployment's prefix; `group` gets the prefix too."""
        return cls(
            settings,
            store,
            group=f"{settings.topic_prefix}{group}",
            name=name,
            topics=[topic_name(topic, settings.topic_prefix)],
            mapper=mapper,
        )

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        self._consumer.subscribe(self.topics, on_revoke=self._on_revoke)
        logger.info("%s writer consuming %s", self.name, ", ".join(self.topics))
        deadline = time.monotonic() + self.settings.sink_batch_seconds
        try:
            while not self._stop.is_set():
                want = max(1, min(10_000, self.settings.sink_batch_rows - self._pending))
                for msg in self._consumer.consume(num_messages=want, timeout=0.1):
                    self._add(msg)
                if self._pending >= self.settings.sink_batch_rows or (
                    self._pending and time.monotonic() >= deadline
                ):
                    self._flush()
                if not self._pending:
                    deadline = time.monotonic() + self.settings.sink_batch_seconds
        finally:
            # SIGTERM: write and commit what we hold, so nothing is read twice needlessly.
            if self._pending:
                self._flush()
            self._consumer.close()
            logger.info("%s writer stopped", self.name)

    def _add(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                logger.warning("%s writer: consumer error %s", self.name, err)
            return
        try:
            rows = list(self.mapper(msg.value() or b""))
        except Exception as exc:  # noqa: BLE001 - a bad record must not stop the writer
            BAD_RECORDS.labels(msg.topic()).inc()
            logger.error(
                "%s writer: skipping unreadable record %s[%d]@%d: %s",
                self.name,
                msg.topic(),
                msg.partition(),
                msg.offset(),
                exc,
            )
            return
        for row in rows:
            self._batch[row.table].append(row.values)
            self._columns[row.table] = row.columns
            self._pending += 1

    def _flush(self) -> bool:
        """Insert every held row, then commit. False if it gave up during an outage
        (stopping or revoked): the rows are dropped uncommitted, to be read again."""
        self._flushing = True
        try:
            return self._write_and_commit()
        finally:
            self._flushing = False
            self._revoked = False

    def _write_and_commit(self) -> bool:
        backoff = 0.2
        for table, rows in list(self._batch.items()):
            while True:
                started = time.perf_counter()
                try:
                    self._insert(table, rows)
                    break
                except Exception as exc:  # noqa: BLE001 - retried until it works or we stop
                    INSERT_ERRORS.labels(table).inc()
                    logger.error(
                        "%s writer: insert of %d rows into %s failed (%s); retrying in %.1f s",
                        self.name,
                        len(rows),
                        table,
                        exc,
                        backoff,
                    )
                    if not paused_wait(self._consumer, backoff, self._interrupted):
                        logger.warning(
                            "%s writer: stopping with %d rows unwritten and uncommitted; "
                            "they will be read again from Kafka",
                            self.name,
                            self._pending,
                        )
                        self._batch.clear()
                        self._pending = 0
                        return False
                    backoff = min(backoff * 2, self.settings.sink_retry_max_s)
            INSERT_SECONDS.observe(time.perf_counter() - started)
            BATCH_ROWS.observe(len(rows))
            ROWS_WRITTEN.labels(table).inc(len(rows))
            del self._batch[table]
        self._pending = 0
        faults.reach(f"{self.name}-writer:after-insert")
        self._commit()
        return True

    def _insert(self, table: str, rows: list[dict[str, Any] | bytes]) -> None:
        """Insert `rows`; if ClickHouse cannot read some, insert the others and drop
        those (halving the batch until each bad row is alone). A replayed half is
        harmless: the keys collapse it."""
        try:
            self.store.insert_json(table, self._columns[table], json_rows(rows))
        except Exception as exc:
            if not unreadable(exc):
                raise
            if len(rows) == 1:
                BAD_ROWS.labels(table).inc()
                logger.error(
                    "%s writer: dropping a row %s cannot read (%s): %.160s",
                    self.name,
                    table,
                    str(exc).splitlines()[0][:300],
                    json_rows(rows).decode(errors="replace"),
                )
                return
            logger.warning(
                "%s writer: %s cannot read some of %d rows; isolating them",
                self.name,
                table,
                len(rows),
            )
            half = len(rows) // 2
            self._insert(table, rows[:half])
            self._insert(table, rows[half:])

    def _interrupted(self) -> bool:
        return self._stop.is_set() or self._revoked

    def _commit(self) -> None:
        try:
            self._consumer.commit(asynchronous=False)
        except Exception as exc:  # noqa: BLE001 - rows are in; a replay will be deduplicated
            logger.warning("%s writer: commit failed (%s); rows may be replayed", self.name, exc)

    def _on_revoke(self, consumer: Consumer, partitions: list[Any]) -> None:
        if self._flushing:
            self._revoked = True  # the flush waiting out an outage gives its rows up
            return
        if self._pending:
            logger.info(
                "%s writer: partitions revoked, writing %d held rows first",
                self.name,
                self._pending,
            )
            self._revoked = True  # one try, no waiting: these partitions are leaving us
            self._flush()
