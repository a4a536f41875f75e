"""The ClickHouse schema, created at start-up, idempotently.

Event tables derive from `contract.kinds`: a new callback parameter becomes a
new column here by itself (`ADD COLUMN IF NOT EXISTS`). Other tables are listed
in `TABLES`; a change to one is a new numbered entry in `MIGRATIONS`, applied
once and recorded in `schema_migrations`.

Every table is a ReplacingMergeTree ordered by the natural de-duplication key,
so a re-delivered or replayed event is one row in `FINAL` query results.
"""

from __future__ import annotations

import logging

from contract.kinds import SPECS, KindSpec, Param, ParamType
from sinks.clickhouse.store import Store

logger = logging.getLogger(__name__)

_TYPES = {
    ParamType.TEXT: "Nullable(String)",
    ParamType.INT: "Nullable(Int64)",
    ParamType.FLOAT: "Nullable(Float64)",
    ParamType.TIMESTAMP: "Nullable(DateTime64(3, 'UTC'))",
}
_KEY_DEFAULTS = {ParamType.TEXT: "''", ParamType.INT: "-1", ParamType.FLOAT: "-1"}

# Columns every event table has besides the callback's own parameters.
EVENT_META_COLUMNS: tuple[tuple[str, str], ...] = (
    ("status_rank", "Int8"),
    ("campaign", "LowCardinality(String)"),
    ("received_at", "DateTime64(3, 'UTC')"),
    ("event_time", "DateTime64(3, 'UTC')"),
    ("tags", "Map(String, String)"),
    ("extra", "Map(String, String)"),
)


def quote(column: str) -> str:
    return f"`{column}`"


def column_type(spec: KindSpec, param: Param) -> str:
    if param.name == spec.sid_param:
        return "String"
    if param.name == spec.status_param:
        return "LowCardinality(String)"
    return _TYPES[param.type]


def event_columns(spec: KindSpec) -> list[tuple[str, str]]:
    return [(p.column, column_type(spec, p)) for p in spec.params] + list(EVENT_META_COLUMNS)


def _key_expr(spec: KindSpec, name: str) -> str:
    param = next(p for p in spec.params if p.name == name)
    if column_type(spec, param).startswith("Nullable"):
        return f"ifNull({quote(param.column)}, {_KEY_DEFAULTS[param.type]})"
    return quote(param.column)


def event_table_ddl(store: Store, spec: KindSpec) -> str:
    columns = ",\n  ".join(f"{quote(n)} {t}" for n, t in event_columns(spec))
    key = ", ".join(_key_expr(spec, name) for name in spec.dedupe_params)
    return (
        f"CREATE TABLE IF NOT EXISTS {store.table(spec.table)} (\n  {columns}\n) "
        f"ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(received_at) ORDER BY ({key})"
    )


TABLES: dict[str, str] = {
    "schema_migrations": """
        (version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))
        ENGINE = ReplacingMergeTree ORDER BY version""",
}

# (version, name, statements) — append only; `{db}` is the database name.
MIGRATIONS: list[tuple[int, str, list[str]]] = []


def migrate(store: Store) -> None:
    for spec in SPECS.values():
        store.command(event_table_ddl(store, spec))
        table = store.table(spec.table)
        for name, type_ in event_columns(spec):
            store.command(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {quote(name)} {type_}")
    for name, body in TABLES.items():
        store.command(f"CREATE TABLE IF NOT EXISTS {store.table(name)} {body}")
    applied = {
        row[0] for row in store.query(f"SELECT version FROM {store.table('schema_migrations')}")
    }
    for version, name, statements in MIGRATIONS:
        if version in applied:
            continue
        for sql in statements:
            store.command(sql.format(db=store.database))
        store.command(
            f"INSERT INTO {store.table('schema_migrations')} (version, name) VALUES "
            "({v:UInt32}, {n:String})",
            parameters={"v": version, "n": name},
        )
        logger.info("applied ClickHouse migration %d: %s", version, name)
    logger.info("ClickHouse schema ready in %s (%s)", store.database, store.dsn)
