"""The ClickHouse writer: Kafka records in, batched inserts out, then commit.

Batches close by size or by time, or as soon as the writer has caught up (a consume
came back empty): waiting out the batch's age then would only delay its rows, at the
end of a burst most of all. So that a trickle of records does not become an insert per
record, a batch closes that early only `_EARLY_CLOSE_GAP_S` after the previous one.
A writer whose rows nobody waits for (the window figures) closes by size and age only:
every insert makes a part, and a part's fixed cost in ClickHouse (about 10 ms of CPU)
outweighs its rows' at the sizes these topics bring.

While one batch is being inserted (on a helper thread: chDB and the HTTP client
release the GIL) the next is consumed, so reading Kafka and writing ClickHouse overlap.
A batch's offsets, taken when it closed, are committed only after its insert succeeded;
on a ClickHouse error the batch is retried with backoff while the consumer is paused
(it keeps polling, so the group does not evict it). A crash between insert and commit
re-delivers the batch, and the ReplacingMergeTree keys make the second copy invisible
in FINAL queries.

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
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from prometheus_client import Counter, Histogram

from contract.settings import Settings
from contract.topics import Topic, topic_name
from sinks import faults
from sinks.clickhouse.store import Store
from sinks.consuming import paused_wait, sink_consumer

logger = logging.getLogger(__name__)

ROWS_WRITTEN = Counter("switchboard_sink_rows_total", "Rows written to ClickHouse", ["table"])
# by table: each insert makes a part, whose fixed cost outweighs its rows' at small sizes
BATCH_ROWS = Histogram(
    "switchboard_sink_batch_rows",
    "Rows per ClickHouse insert batch",
    ["table"],
    buckets=(1, 10, 100, 1000, 5000, 20000, 50000, 100000),
)
INSERT_SECONDS = Histogram("switchboard_sink_insert_seconds", "Time of one batch insert", ["table"])
INSERT_ERRORS = Counter("switchboard_sink_insert_errors_total", "Failed batch inserts", ["table"])
BAD_RECORDS = Counter(
    "switchboard_sink_bad_records_total", "Records that could not be read", ["topic"]
)
BAD_ROWS = Counter(
    "switchboard_sink_bad_rows_total", "Rows ClickHouse could not read, dropped", ["table"]
)


# (table, its columns, one JSON object). A plain tuple, not a NamedTuple or a
# dataclass: one is made per record, and making a NamedTuple cost a third of a
# record's mapping (bench/sink's writer path).
Row = tuple[str, tuple[str, ...], bytes]


class _Batch:
    """Rows by table, and the offsets that acknowledge them once written."""

    def __init__(self) -> None:
        self.rows: dict[str, list[bytes]] = defaultdict(list)
        self.columns: dict[str, tuple[str, ...]] = {}
        self.size = 0
        self.offsets: list[TopicPartition] = []


# At most five batches a second close before their age (see the module's docstring): each
# insert makes a part that ClickHouse merges later, so a stream of tiny ones costs CPU.
_EARLY_CLOSE_GAP_S = 0.2

# ClickHouse's codes for input it cannot read (CANNOT_PARSE_*, TYPE_MISMATCH, ...): the
# rows are at fault, not the store, and retrying the same batch would fail forever.
_UNREADABLE = frozenset({6, 26, 27, 32, 33, 38, 41, 53, 69, 70, 72, 117, 321})
_CODE = re.compile(r"Code: (\d+)\.")


def unreadable(exc: Exception) -> bool:
    found = _CODE.search(str(exc))
    return found is not None and int(found.group(1)) in _UNREADABLE


# Turns one Kafka record into its row; raises ValueError-like errors for bad records.
RowMapper = Callable[[bytes], Row]


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
        age_s: float | None = None,
        close_early: bool = True,
    ) -> None:
        self.settings = settings
        self.store = store
        self.mapper = mapper
        self.name = name
        self.topics = topics
        self.age_s = settings.sink_batch_seconds if age_s is None else age_s
        self.close_early = close_early
        self._consumer = sink_consumer(settings, group)
        self._stop = threading.Event()
        self._batch = _Batch()  # being filled
        self._writing: tuple[_Batch, Future[None]] | None = None  # being inserted
        self._inserter = ThreadPoolExecutor(1, thread_name_prefix=f"{name}-insert")
        self._settling = False
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
        age_s: float | None = None,
        close_early: bool = True,
    ) -> BatchWriter:
        """One of our topics under the deployment's prefix; `group` gets the prefix too."""
        return cls(
            settings,
            store,
            group=f"{settings.topic_prefix}{group}",
            name=name,
            topics=[topic_name(topic, settings.topic_prefix)],
            mapper=mapper,
            age_s=age_s,
            close_early=close_early,
        )

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        self._consumer.subscribe(self.topics, on_revoke=self._on_revoke)
        logger.info("%s writer consuming %s", self.name, ", ".join(self.topics))
        limit, age = self.settings.sink_batch_rows, self.age_s
        deadline = time.monotonic() + age
        inserted_at = 0.0  # when the last batch closed
        try:
            while not self._stop.is_set():
                want = max(1, min(10_000, limit - self._batch.size))
                messages = self._consumer.consume(num_messages=want, timeout=0.1)
                self._add(messages)
                now = time.monotonic()
                caught_up = (
                    self.close_early and not messages and now - inserted_at >= _EARLY_CLOSE_GAP_S
                )
                if self._batch.size >= limit or (
                    self._batch.size and (caught_up or now >= deadline)
                ):
                    # the batch before first, so that commits stay in order
                    if self._settle():
                        self._start_insert()
                        inserted_at = now
                elif self._writing is not None and self._writing[1].done():
                    self._settle()  # commit as soon as written, not at the next batch
                if not self._batch.size:
                    deadline = time.monotonic() + age
        finally:
            # SIGTERM: write and commit what we hold, so nothing is read twice needlessly.
            self._settle()
            if self._batch.size:
                self._start_insert()
                self._settle()
            self._inserter.shutdown()
            self._consumer.close()
            logger.info("%s writer stopped", self.name)

    def _add(self, messages: list[Message]) -> None:
        """Map each record to rows of the batch being filled. One loop over the whole
        consume() result, with locals, because at 100,000s of records a second the
        per-record overhead is most of the writer's own CPU."""
        batch, mapper = self._batch, self.mapper
        rows_of, columns = batch.rows, batch.columns
        added = 0
        for msg in messages:
            if msg.error() is not None:
                self._consumer_error(msg)
                continue
            try:
                table, table_columns, values = mapper(msg.value() or b"")
            except Exception as exc:  # noqa: BLE001 - a bad record must not stop the writer
                self._unreadable(msg, exc)
                continue
            rows_of[table].append(values)
            columns[table] = table_columns
            added += 1
        batch.size += added

    def _consumer_error(self, msg: Message) -> None:
        err = msg.error()
        if err is not None and err.code() != KafkaError._PARTITION_EOF:
            logger.warning("%s writer: consumer error %s", self.name, err)

    def _unreadable(self, msg: Message, exc: Exception) -> None:
        BAD_RECORDS.labels(msg.topic()).inc()
        logger.error(
            "%s writer: skipping unreadable record %s[%d]@%d: %s",
            self.name,
            msg.topic(),
            msg.partition(),
            msg.offset(),
            exc,
        )

    def _start_insert(self) -> None:
        """Close the batch being filled: note its offsets (everything consumed so far
        is in it) and insert it on the helper thread."""
        batch, self._batch = self._batch, _Batch()
        if not batch.size:
            return
        try:
            positions = self._consumer.position(self._consumer.assignment())
        except Exception as exc:  # noqa: BLE001 - not committing only means a replay
            logger.warning("%s writer: no positions to commit (%s)", self.name, exc)
            positions = []
        batch.offsets = [tp for tp in positions if tp.offset >= 0]
        self._writing = (batch, self._inserter.submit(self._insert_all, batch))

    def _settle(self) -> bool:
        """Wait for the batch being inserted; retry it while ClickHouse fails, then
        commit its offsets. False if it gave up during an outage (stopping or revoked):
        the rows are dropped uncommitted, to be read again."""
        if self._writing is None:
            return True
        batch, insert = self._writing
        self._settling = True
        try:
            backoff = 0.2
            while True:
                try:
                    insert.result()
                    break
                except Exception as exc:  # noqa: BLE001 - retried until it works or we stop
                    logger.error(
                        "%s writer: insert of %d rows failed (%s); retrying in %.1f s",
                        self.name,
                        batch.size,
                        exc,
                        backoff,
                    )
                    if not paused_wait(self._consumer, backoff, self._interrupted):
                        logger.warning(
                            "%s writer: stopping with %d rows unwritten and uncommitted; "
                            "they will be read again from Kafka",
                            self.name,
                            batch.size + self._batch.size,
                        )
                        self._batch = _Batch()
                        return False
                    backoff = min(backoff * 2, self.settings.sink_retry_max_s)
                    insert = self._inserter.submit(self._insert_all, batch)
            faults.reach(f"{self.name}-writer:after-insert")
            self._commit(batch.offsets)
            return True
        finally:
            self._writing = None
            self._settling = False
            self._revoked = False

    def _insert_all(self, batch: _Batch) -> None:
        """Every table of the batch; a table written is not written again on a retry."""
        for table, rows in list(batch.rows.items()):
            started = time.perf_counter()
            try:
                self._insert(table, batch.columns[table], rows)
            except Exception:
                INSERT_ERRORS.labels(table).inc()
                raise
            INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
            BATCH_ROWS.labels(table).observe(len(rows))
            ROWS_WRITTEN.labels(table).inc(len(rows))
            batch.size -= len(rows)
            del batch.rows[table]

    def _insert(self, table: str, columns: tuple[str, ...], rows: list[bytes]) -> None:
        """Insert `rows`; if ClickHouse cannot read some, insert the others and drop
        those (halving the batch until each bad row is alone). A replayed half is
        harmless: the keys collapse it."""
        try:
            self.store.insert_json(table, columns, b"\n".join(rows))
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
                    rows[0].decode(errors="replace"),
                )
                return
            logger.warning(
                "%s writer: %s cannot read some of %d rows; isolating them",
                self.name,
                table,
                len(rows),
            )
            half = len(rows) // 2
            self._insert(table, columns, rows[:half])
            self._insert(table, columns, rows[half:])

    def _interrupted(self) -> bool:
        return self._stop.is_set() or self._revoked

    def _commit(self, offsets: list[TopicPartition]) -> None:
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as exc:  # noqa: BLE001 - rows are in; a replay will be deduplicated
            logger.warning("%s writer: commit failed (%s); rows may be replayed", self.name, exc)

    def _on_revoke(self, consumer: Consumer, partitions: list[Any]) -> None:
        if self._settling:
            self._revoked = True  # the insert waiting out an outage gives its rows up
            return
        if self._writing is None and not self._batch.size:
            return
        logger.info(
            "%s writer: partitions revoked, writing %d held rows first",
            self.name,
            self._batch.size + (self._writing[0].size if self._writing else 0),
        )
        # one try each, no waiting: these partitions are leaving us
        self._revoked = True
        if self._settle():
            self._revoked = True
            self._start_insert()
            self._settle()
        self._batch = _Batch()
