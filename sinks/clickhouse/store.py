"""One ClickHouse connection per process, through clickhouse-connect only.

`chdb:///path` is the embedded engine (one process may open a path), and
`http(s)://...` a server: the same code serves both. The client is not safe
to share between threads, so every call holds a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from contract.errors import ServiceUnavailable
from contract.settings import Settings

logger = logging.getLogger(__name__)


# optimize_on_insert: not collapsing duplicate keys inside each inserted block: every
# read of our ReplacingMergeTree tables is FINAL (or merges collapse them), so that work
# bought nothing, and skipping it takes inserts from about 290,000 to 375,000 rows/s with
# less CPU per row (chDB, 20,000-row batches of SMS events).
# input_format_parallel_parsing: splitting a batch's JSON among parser threads costs more
# CPU than it saves where the writer already overlaps inserting with consuming and cores
# are few: one parser took 20,000-row batches from about 220,000 to 320,000 rows per
# CPU-second (chDB, 2 cores), and the sink's own inserts are smaller still.
_INSERT_SETTINGS = {"optimize_on_insert": 0, "input_format_parallel_parsing": 0}


def _redact(dsn: str) -> str:
    if "@" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


# On a cluster: an insert into a Distributed table returns once its shard has the rows
# (not when they are queued for it), so an offset is committed after the write; and
# replicas are chosen in the configured order, so that a read after a write (the
# dispatcher's look at `forwards` before it sends) goes to the replica that took it.
_CLUSTER_SETTINGS = {"distributed_foreground_insert": 1, "load_balancing": "in_order"}


def _client_for(dsn: str, cluster: str | None) -> Client:
    if cluster is None:
        return clickhouse_connect.get_client(dsn=dsn)
    return clickhouse_connect.get_client(dsn=dsn, settings=_CLUSTER_SETTINGS)


def create_database(database: str, cluster: str | None) -> str:
    on_cluster = f" ON CLUSTER `{cluster}`" if cluster else ""
    return f"CREATE DATABASE IF NOT EXISTS {database}{on_cluster}"


class Store:
    """`cluster`: the ClickHouse cluster's name, when the tables are replicated on one
    (`schema`)."""

    def __init__(
        self, client: Client | None, database: str, dsn: str, cluster: str | None = None
    ) -> None:
        self._client_ = client
        self.database = database
        self.cluster = cluster
        self.dsn = _redact(dsn)
        self._raw_dsn = dsn
        self._lock = threading.Lock()

    @property
    def _client(self) -> Client:
        """The client, made on first use when the store was opened `deferred`."""
        if self._client_ is None:
            client = _client_for(self._raw_dsn, self.cluster)
            client.command(create_database(self.database, self.cluster))
            self._client_ = client
        return self._client_

    @classmethod
    def deferred(cls, settings: Settings) -> Store:
        """No start-up check: the connection is made by the first call, and again by the
        next one if that failed. For a writer that must keep its place in Kafka through a
        ClickHouse outage at start instead of exiting (it retries its inserts)."""
        return cls(
            None, settings.clickhouse_database, settings.clickhouse_dsn, settings.clickhouse_cluster
        )

    @classmethod
    def connect(cls, settings: Settings, *, attempts: int = 10, delay_s: float = 1.0) -> Store:
        """Bounded start-up check: fail with what to start rather than hang."""
        dsn = settings.clickhouse_dsn
        last: Exception | None = None
        for attempt in range(1, attempts + 1):
            try:
                client = _client_for(dsn, settings.clickhouse_cluster)
                database, cluster = settings.clickhouse_database, settings.clickhouse_cluster
                client.command(create_database(database, cluster))
                return cls(client, database, dsn, cluster)
            except Exception as exc:  # noqa: BLE001 - any failure to connect is retried
                last = exc
                logger.info(
                    "waiting for ClickHouse at %s (%d/%d): %s", _redact(dsn), attempt, attempts, exc
                )
                time.sleep(delay_s)
        raise ServiceUnavailable(
            f"ClickHouse at {_redact(dsn)} did not answer after {attempts} tries ({last}); "
            "start it (`docker compose up clickhouse`) or set SWITCHBOARD_CLICKHOUSE_URL "
            "(chdb:///path for the embedded engine)"
        )

    def table(self, name: str) -> str:
        return f"{self.database}.{name}"

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        with self._lock:
            return self._client.command(sql, parameters=parameters)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[Sequence[Any]]:
        with self._lock:
            return list(self._client.query(sql, parameters=parameters).result_rows)

    def query_dicts(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            result = self._client.query(sql, parameters=parameters)
            return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def insert_json(self, table: str, columns: Sequence[str], rows: bytes) -> None:
        """Insert newline-separated JSON objects; ClickHouse parses them natively (fast)."""
        with self._lock:
            self._client.raw_insert(
                self.table(table),
                list(columns),
                insert_block=rows,
                fmt="JSONEachRow",
                settings=_INSERT_SETTINGS,
            )

    def close(self) -> None:
        with self._lock:
            if self._client_ is not None:
                self._client_.close()


__all__ = ["ClickHouseError", "Store"]
