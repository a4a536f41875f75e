"""The ClickHouse writers: Kafka records in, batched inserts out, then commit.

Each writer is a `Batching` strategy on the consumer runtime (`runtime/`), which closes
batches by size, age, or as soon as the writer has caught up (so that rows are
queryable within about a second), inserts a batch on a helper thread while the next is
consumed (chDB and the HTTP client release the GIL), and commits its offsets once the
insert returned; during a ClickHouse outage the insert is retried with backoff while the
consumer is paused. A writer whose rows nobody waits for (the window figures) closes by
size and age only: every insert makes a part, and a part's fixed cost in ClickHouse
(about 10 ms of CPU) outweighs its rows' at the sizes these topics bring.

A crash between insert and commit re-delivers the batch, and the ReplacingMergeTree
keys make the second copy invisible in FINAL queries.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable

import orjson
from confluent_kafka import Message
from prometheus_client import Counter, Histogram

from contract.kafka import sink_consumer_config
from contract.settings import Settings
from contract.topics import Topic, topic_name
from runtime.consumer import ConsumerRuntime
from runtime.strategies import Batching, describe
from sinks.clickhouse.store import Store

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
# Turns one Kafka record into its row; raises ValueError-like errors for bad records.
RowMapper = Callable[[bytes], Row]

# ClickHouse's codes for input it cannot read (CANNOT_PARSE_*, TYPE_MISMATCH, ...): the
# rows are at fault, not the store, and retrying the same batch would fail forever.
_UNREADABLE = frozenset({6, 26, 27, 32, 33, 38, 41, 53, 69, 70, 72, 117, 321})
_CODE = re.compile(r"Code: (\d+)\.")


def _code_of(exc: Exception) -> str:
    found = _CODE.search(str(exc))
    return f"ClickHouse code {found.group(1)}" if found else type(exc).__name__


_ID_FIELDS = ("sid", "alert_id", "letter_id", "forward_id", "message_sid")


def _row_id(row: bytes) -> str:
    """What names a row in a log line: its SID or id, never its content."""
    try:
        found = orjson.loads(row)
    except orjson.JSONDecodeError:
        return "an unreadable row"
    for name in _ID_FIELDS:
        if isinstance(found, dict) and found.get(name):
            return f"{name}={found[name]}"
    return "a row without an id"


def unreadable(exc: Exception) -> bool:
    found = _CODE.search(str(exc))
    return found is not None and int(found.group(1)) in _UNREADABLE


class Tables:
    """A batch: rows by table, with each table's columns."""

    __slots__ = ("columns", "rows")

    def __init__(self) -> None:
        self.rows: dict[str, list[bytes]] = defaultdict(list)
        self.columns: dict[str, tuple[str, ...]] = {}


class TableSink:
    """Maps records to rows and inserts them, table by table (a table written is not
    written again when a later one fails and the batch is retried)."""

    def __init__(self, store: Store, mapper: RowMapper, name: str) -> None:
        self.store = store
        self.mapper = mapper
        self.name = name

    def new(self) -> Tables:
        return Tables()

    def add(self, batch: Tables, records: list[Message]) -> int:
        """One loop over the whole consume() result, with locals, because at 100,000s
        of records a second the per-record overhead is most of the writer's own CPU."""
        mapper, rows_of, columns = self.mapper, batch.rows, batch.columns
        added = 0
        for msg in records:
            try:
                table, table_columns, values = mapper(msg.value() or b"")
            except Exception as exc:  # noqa: BLE001 - a bad record must not stop the writer
                BAD_RECORDS.labels(msg.topic()).inc()
                logger.error(
                    "%s writer: skipping unreadable record %s: %s", self.name, describe(msg), exc
                )
                continue
            rows_of[table].append(values)
            columns[table] = table_columns
            added += 1
        return added

    def write(self, batch: Tables) -> None:
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
            del batch.rows[table]

    def close(self) -> None:
        pass

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
                    "%s writer: dropping a row %s cannot read (%s): %s",
                    self.name,
                    table,
                    # ClickHouse quotes the row it could not read: numbers and bodies
                    _code_of(exc),
                    _row_id(rows[0]),
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


def table_writer(
    settings: Settings,
    store: Store,
    topic: Topic | tuple[Topic, ...],
    *,
    group: str,
    name: str,
    mapper: RowMapper,
    age_s: float | None = None,
    close_early: bool = True,
) -> ConsumerRuntime:
    """A writer of one or more of our topics (under the deployment's prefix; `group` gets
    the prefix too) into the tables `mapper` names."""
    sink = TableSink(store, mapper, name)
    topics = topic if isinstance(topic, tuple) else (topic,)
    return ConsumerRuntime(
        settings,
        name=name,
        group=f"{settings.topic_prefix}{group}",
        topics=[topic_name(t, settings.topic_prefix) for t in topics],
        config=sink_consumer_config(settings),
        strategy=lambda runtime: Batching(
            runtime,
            sink,
            max_rows=settings.sink_batch_rows,
            age_s=settings.sink_batch_seconds if age_s is None else age_s,
            close_early=close_early,
            retry_max_s=settings.sink_retry_max_s,
        ),
    )
