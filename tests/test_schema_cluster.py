"""The schema on a ClickHouse cluster: replicated tables ON CLUSTER, Distributed tables
over them under the usual names, every statement one that ClickHouse parses; and the
one-server schema byte for byte what it was.

No ClickHouse server (nor Keeper) runs on the machines these tests run on, and chDB has
no cluster: it cannot create a replicated or Distributed table. It can parse one, with
ClickHouse's own parser (`formatQuery`), so that is what these tests do with the cluster
DDL, beside checking its shape. The one-server DDL runs on chDB in tests/test_schema.py
and every test that uses the `store` fixture.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from contract.errors import ConfigurationError
from contract.settings import load_settings
from sinks.clickhouse.schema import LOCAL_SUFFIX, MIGRATIONS, TABLES, alter, migrate
from sinks.clickhouse.store import Store, create_database

# What `migrate` sent to a new one-server database before clusters existed (the commit
# that added this file's test made it from the code before that change). After a
# deliberate change to the one-server schema, write it again with
# SWITCHBOARD_WRITE_GOLDEN=1.
GOLDEN = Path(__file__).parent / "golden" / "clickhouse_single_node.sql"
CLUSTER = "switchboard_cluster"


class Recorder:
    """Stands where a Store would, for `migrate`, and keeps what it was sent: the DDL is
    the subject here, not a server's answers. `applied`: migration versions on record."""

    def __init__(self, cluster: str | None = None, applied: tuple[int, ...] = ()) -> None:
        self.database = "switchboard"
        self.dsn = "http://clickhouse:8123"
        self.cluster = cluster
        self.applied = applied
        self.sql: list[str] = []

    def table(self, name: str) -> str:
        return f"{self.database}.{name}"

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self.sql.append(sql)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[int]]:
        self.sql.append(sql)
        return [(version,) for version in self.applied]


def _migrated(cluster: str | None = None, applied: tuple[int, ...] = ()) -> list[str]:
    recorder = Recorder(cluster, applied)
    migrate(recorder)  # type: ignore[arg-type]  # a Store's shape, recording
    return recorder.sql


def _ddl(statements: list[str]) -> list[str]:
    return [s for s in statements if not s.startswith(("SELECT", "INSERT"))]


@pytest.fixture(scope="module")
def parser(chdb_path: Path) -> Iterator[Any]:
    """chDB on the session's path (one per process), for its parser."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{chdb_path}")
    try:
        yield client
    finally:
        client.close()


def _parsed(parser: Any, sql: str) -> str:
    """ClickHouse's own formatting of `sql`; raises on anything it cannot parse."""
    return str(
        parser.query("SELECT formatQuery({q:String})", parameters={"q": sql}).result_rows[0][0]
    )


def test_the_one_server_schema_is_what_it_was() -> None:
    statements = ";\n\n".join(_migrated()) + ";\n"
    if os.environ.get("SWITCHBOARD_WRITE_GOLDEN"):
        GOLDEN.write_text(statements)
    assert statements == GOLDEN.read_text()
    assert "ON CLUSTER" not in statements and "Replicated" not in statements


def test_every_cluster_statement_is_one_clickhouse_parses(parser: Any) -> None:
    statements = [create_database("switchboard", CLUSTER), *_ddl(_migrated(CLUSTER))]
    for sql in statements:
        formatted = _parsed(parser, sql)
        assert f"ON CLUSTER {CLUSTER}" in formatted, sql
    # and the parser is a real check: it refuses what ClickHouse would
    with pytest.raises(Exception, match="Syntax error"):
        _parsed(parser, statements[1].replace("'{replica}')", "'{replica}'"))


def test_each_table_is_replicated_and_distributed_by_its_key() -> None:
    statements = _ddl(_migrated(CLUSTER))
    creates = {
        m[1]: s
        for s in statements
        if (m := re.match(r"CREATE TABLE IF NOT EXISTS switchboard\.(\w+) ", s))
    }
    event_tables = {
        m[1] for s in _migrated() if (m := re.match(r"CREATE TABLE .*?\.(\w+_events) \(", s))
    }
    assert len(event_tables) == 5
    for name in [*TABLES, *event_tables]:
        local, distributed = creates[name + LOCAL_SUFFIX], creates[name]
        assert re.search(
            r"ENGINE = ReplicatedReplacingMergeTree\("
            rf"'/clickhouse/tables/\{{shard\}}/switchboard/{name}_local', '\{{replica\}}'",
            local,
        ), local
        order_by = local.rsplit("ORDER BY ", 1)[1].strip()
        assert distributed.endswith(
            f"AS switchboard.{name}_local ENGINE = Distributed('{CLUSTER}', 'switchboard', "
            f"'{name}_local', cityHash64({order_by}))"
        ), distributed
    # a version column stays the version column
    assert creates["forwards_local"].count("'{replica}', updated_at)") == 1
    # the staging views write through the Distributed tables, sharded like the writers'
    views = [s for s in statements if s.startswith("CREATE MATERIALIZED VIEW")]
    assert len(views) == 5
    assert all(re.search(r" TO switchboard\.\w+_events AS SELECT", v) for v in views)


def test_migrations_alter_the_replicated_tables_and_columns_of_the_distributed_ones() -> None:
    statements = _migrated(CLUSTER)
    for version, _, given in MIGRATIONS:
        for sql in given:
            name = re.match(r"ALTER TABLE \{db\}\.(\w+) ", sql)
            assert name, f"migration {version} is not ALTER TABLE {{db}}.<table>: {sql}"
            local = f"ALTER TABLE switchboard.{name[1]}_local ON CLUSTER `{CLUSTER}` "
            assert any(s.startswith(local) for s in statements), (version, sql)
    alerts = [s for s in statements if s.startswith("ALTER TABLE switchboard.alerts ON CLUSTER")]
    assert len(alerts) == 1 and "ADD COLUMN IF NOT EXISTS fingerprint" in alerts[0]
    # what only a table with data has stays off the Distributed table
    recorder = Recorder(CLUSTER)
    ttl = "ALTER TABLE switchboard.sms_events MODIFY TTL toDateTime(received_at) + INTERVAL 90 DAY"
    assert alter(recorder, ttl) == [  # type: ignore[arg-type]
        "ALTER TABLE switchboard.sms_events_local ON CLUSTER `switchboard_cluster` "
        "MODIFY TTL toDateTime(received_at) + INTERVAL 90 DAY"
    ]


def test_the_cluster_migration_is_idempotent() -> None:
    """Run again on a migrated cluster: only statements that change nothing when their
    object exists, and no migration a second time."""
    again = _ddl(_migrated(CLUSTER, applied=tuple(v for v, _, _ in MIGRATIONS)))
    idempotent = re.compile(
        r"CREATE (TABLE|MATERIALIZED VIEW) IF NOT EXISTS |CREATE OR REPLACE VIEW "
        r"|ALTER TABLE \S+ ON CLUSTER `\w+` ADD COLUMN IF NOT EXISTS `\w+` [\w(), ']+$"
    )
    assert again and all(idempotent.match(s) for s in again), [
        s for s in again if not idempotent.match(s)
    ][:3]
    first = _ddl(_migrated(CLUSTER))
    assert len(first) > len(again)  # the migrations ran the first time only


def test_a_cluster_needs_a_server() -> None:
    with pytest.raises(ConfigurationError, match="SWITCHBOARD_CLICKHOUSE_CLUSTER"):
        load_settings(_env_file=None, clickhouse_cluster=CLUSTER)
    settings = load_settings(
        _env_file=None,
        clickhouse_cluster=CLUSTER,
        clickhouse_url="http://default:@127.0.0.1:8123",
    )
    store = Store.deferred(settings)
    assert store.cluster == CLUSTER
