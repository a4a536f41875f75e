"""The ClickHouse schema, created at start-up, idempotently.

Event tables derive from `contract.kinds`: a new callback parameter becomes a
new column here by itself (`ADD COLUMN IF NOT EXISTS`). Other tables are listed
in `TABLES`; a change to one is a new numbered entry in `MIGRATIONS`, applied
once and recorded in `schema_migrations`.

Every table is a ReplacingMergeTree ordered by the natural de-duplication key,
so a re-delivered or replayed event is one row in `FINAL` query results.

Events reach their tables through a staging table per kind (`<table>_in_<hash>`,
engine Null: it keeps nothing) and a materialized view from it into the event table:
the writer inserts the events topic's records as they are, and ClickHouse parses them
and computes the status rank, about three times faster than Python could. The hash
names the staging shape, so a changed shape is a new staging table and view beside
the old ones, never a view dropped and re-created under a running writer. A view
that only routes rows (no aggregation) adds no duplicates: the target table's keys
still collapse them.

On a ClickHouse cluster (`SWITCHBOARD_CLICKHOUSE_CLUSTER`), every statement runs
`ON CLUSTER`: each table is `<name>_local`, a `ReplicatedReplacingMergeTree` on every
replica of every shard, and `<name>` is a `Distributed` table over them, sharded by the
de-duplication key, so that a callback and its re-deliveries meet on one shard and
`FINAL` still collapses them. Readers and writers keep using `<name>`: reports, exports,
the dashboard and Grafana read the Distributed tables, the writers insert into them
(synchronously: `Store`), and the staging views write into them. A migration's
`ALTER TABLE {db}.<name>` runs on `<name>_local`, and on `<name>` too when it only
changes columns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re

from contract.kinds import SPECS, CallbackKind, KindSpec, Param, ParamType, Personal
from contract.settings import Settings
from contract.statuses import UNKNOWN_RANK
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
    ("extra", "Map(String, String)"),  # parameters with no column of their own
    ("parse_errors", "Map(String, String)"),  # unreadable parameters (NULL in their column)
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


def event_table_body(spec: KindSpec) -> str:
    columns = ",\n  ".join(f"{quote(n)} {t}" for n, t in event_columns(spec))
    key = ", ".join(_key_expr(spec, name) for name in spec.dedupe_params)
    return (
        f"(\n  {columns}\n) "
        f"ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(received_at) ORDER BY ({key})"
    )


LOCAL_SUFFIX = "_local"
_ENGINE = re.compile(r"ENGINE = ReplacingMergeTree(?:\((\w+)\))?")
_ORDER_BY = re.compile(r"ORDER BY (.+?)\s*$", re.S)


def _on(store: Store) -> str:
    return f" ON CLUSTER `{store.cluster}`" if store.cluster else ""


def create_table(store: Store, name: str, body: str) -> list[str]:
    """`CREATE TABLE` of a ReplacingMergeTree table with `body` (columns, engine, keys):
    as it is on one server; on a cluster, replicated as `<name>_local` and Distributed
    as `name`, sharded by its sorting key."""
    if store.cluster is None:
        return [f"CREATE TABLE IF NOT EXISTS {store.table(name)} {body}"]
    local = name + LOCAL_SUFFIX
    path = f"'/clickhouse/tables/{{shard}}/{store.database}/{local}', '{{replica}}'"
    replicated = _ENGINE.sub(
        lambda m: f"ENGINE = ReplicatedReplacingMergeTree({path}{f', {m[1]}' if m[1] else ''})",
        body,
    )
    order_by = _ORDER_BY.search(body)
    if replicated == body or order_by is None:
        raise ValueError(f"table {name}: not a ReplacingMergeTree with an ORDER BY: {body}")
    shards = (
        f"Distributed('{store.cluster}', '{store.database}', '{local}', cityHash64({order_by[1]}))"
    )
    return [
        f"CREATE TABLE IF NOT EXISTS {store.table(local)}{_on(store)} {replicated}",
        f"CREATE TABLE IF NOT EXISTS {store.table(name)}{_on(store)} "
        f"AS {store.table(local)} ENGINE = {shards}",
    ]


_ALTER = re.compile(r"ALTER TABLE (\{db\}|\w+)\.(\w+) (.+)", re.S)
_COLUMN_ACTION = re.compile(r"(ADD|DROP|MODIFY|RENAME|COMMENT|CLEAR) COLUMN ", re.I)


def _actions(text: str) -> list[str]:
    """An ALTER's comma-separated actions (commas in brackets or quotes do not count)."""
    actions, depth, quoted, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quoted:
            quoted = "" if char == quoted and text[i - 1] != "\\" else quoted
        elif char in "'`\"":
            quoted = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            actions.append(text[start:i].strip())
            start = i + 1
    return [*actions, text[start:].strip()]


def alter(store: Store, sql: str) -> list[str]:
    """An `ALTER TABLE {db}.<name> ...` as it runs here: on one server as written; on a
    cluster on the replicated table, and on the Distributed one too when every action
    changes columns (a Distributed table has columns, no data, TTL or indexes)."""
    if store.cluster is None:
        return [sql]
    match = _ALTER.fullmatch(sql.strip())
    if match is None:
        raise ValueError(f"on a cluster, a migration is ALTER TABLE {{db}}.<table> ...: {sql}")
    db, name, actions = match.groups()
    statements = [f"ALTER TABLE {db}.{name}{LOCAL_SUFFIX}{_on(store)} {actions}"]
    if all(_COLUMN_ACTION.match(action) for action in _actions(actions)):
        statements.append(f"ALTER TABLE {db}.{name}{_on(store)} {actions}")
    return statements


# The events topic's record (`contract.events.Event.to_bytes`) as ClickHouse reads it.
STAGING_COLUMNS = (
    "received_at",
    "event_time",
    "campaign",
    "values",
    "tags",
    "extra",
    "parse_errors",
    "source",
)
_STAGING_TYPES = {
    ParamType.TEXT: "Nullable(String)",
    ParamType.INT: "Nullable(Int64)",
    ParamType.FLOAT: "Nullable(Float64)",
    ParamType.TIMESTAMP: "Nullable(Float64)",  # epoch seconds in the event
}


@dataclasses.dataclass(frozen=True, slots=True)
class EventStaging:
    table: str  # where the writer inserts a kind's events
    view: str  # from `table` into the kind's event table
    columns: str  # DDL
    select: str  # the view's query; `{db}` for the database


def _event_staging(spec: KindSpec) -> EventStaging:
    values = ", ".join(f"{quote(p.column)} {_STAGING_TYPES[p.type]}" for p in spec.params)
    columns = (
        "received_at Float64, event_time Float64, campaign String, "
        f"`values` Tuple({values}), tags Map(String, String), extra Map(String, String), "
        "parse_errors Map(String, String), source String"
    )
    exprs = []
    for p in spec.params:
        value = f"tupleElement(`values`, '{p.column}')"
        if p.name in (spec.sid_param, spec.status_param):
            value = f"ifNull({value}, '')"
        elif p.type is ParamType.TIMESTAMP:
            value = f"toDateTime64({value}, 3, 'UTC')"
        exprs.append(f"{value} AS {quote(p.column)}")
    status = f"ifNull(tupleElement(`values`, '{spec.status_column}'), '')"
    names = ", ".join(f"'{name}'" for name in spec.ranks)
    ranks = ", ".join(str(rank) for rank in spec.ranks.values())
    exprs += [
        f"toInt8(transform({status}, [{names}], [{ranks}], {UNKNOWN_RANK})) AS status_rank",
        "campaign",
        "toDateTime64(received_at, 3, 'UTC') AS received_at",
        "toDateTime64(event_time, 3, 'UTC') AS event_time",
        "tags",
        "extra",
        "parse_errors",
        "if(source = '', 'callback', source) AS source",
    ]
    digest = hashlib.sha256(f"{columns}|{exprs}".encode()).hexdigest()[:10]
    table = f"{spec.table}_in_{digest}"
    select = f"SELECT {', '.join(exprs)} FROM {{db}}.{table}"
    return EventStaging(table, f"{spec.table}_mv_{digest}", columns, select)


EVENT_STAGING: dict[CallbackKind, EventStaging] = {
    kind: _event_staging(spec) for kind, spec in SPECS.items()
}

TABLES: dict[str, str] = {
    "schema_migrations": """
        (version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))
        ENGINE = ReplacingMergeTree ORDER BY version""",
    # The shapes every stage agreed on (BRIEF: shared shapes); the sinks write them.
    "alerts": """
        (alert_id String, type LowCardinality(String), scope String,
         window_start DateTime64(3, 'UTC'), window_end DateTime64(3, 'UTC'),
         count UInt64, threshold Float64, value Float64, raised_at DateTime64(3, 'UTC'))
        ENGINE = ReplacingMergeTree ORDER BY alert_id""",
    "failed_messages": """
        (message_sid String, message_status LowCardinality(String),
         error_code Nullable(String), error_message Nullable(String),
         date_sent Nullable(DateTime64(3, 'UTC')),
         `to` Nullable(String), `from` Nullable(String), body Nullable(String),
         campaign LowCardinality(String), received_at DateTime64(3, 'UTC'),
         enriched_at DateTime64(3, 'UTC'), enrichment LowCardinality(String))
        ENGINE = ReplacingMergeTree(enriched_at) ORDER BY message_sid""",
    "delivery_windows": """
        (scope String, window_s UInt32, window_start DateTime64(3, 'UTC'),
         window_end DateTime64(3, 'UTC'), sent UInt64, delivered UInt64, undelivered UInt64,
         failed UInt64, unconfirmed UInt64, delivery_rate Nullable(Float64),
         updated_at DateTime64(3, 'UTC'))
        ENGINE = ReplacingMergeTree(updated_at) ORDER BY (scope, window_s, window_start)""",
    "call_windows": """
        (scope String, window_s UInt32, window_start DateTime64(3, 'UTC'),
         window_end DateTime64(3, 'UTC'), calls UInt64, completed UInt64, failed UInt64,
         busy UInt64, no_answer UInt64, canceled UInt64, duration_s UInt64, mos_count UInt64,
         mos_sum Float64, mos_mean Nullable(Float64), updated_at DateTime64(3, 'UTC'))
        ENGINE = ReplacingMergeTree(updated_at) ORDER BY (scope, window_s, window_start)""",
    "forwards": """
        (forward_id String, kind LowCardinality(String), `to` String, `from` String,
         body String, call_sid Nullable(String), state LowCardinality(String),
         provider_sid Nullable(String), attempts UInt32, error Nullable(String),
         requested_at DateTime64(3, 'UTC'), updated_at DateTime64(3, 'UTC'))
        ENGINE = ReplacingMergeTree(updated_at) ORDER BY forward_id""",
    # Both dead-letter topics (contract.deadletters): one row per letter, its latest state
    # (dead, or replayed until it is dead-lettered again).
    "dead_letters": """
        (letter_id String, reason LowCardinality(String), message String,
         stage LowCardinality(String), topic LowCardinality(String),
         `partition` Int32, `offset` Int64, `key` Nullable(String), sid Nullable(String),
         raw String, raw_encoding LowCardinality(String), dead_at DateTime64(3, 'UTC'),
         state LowCardinality(String), updated_at DateTime64(3, 'UTC'))
        ENGINE = ReplacingMergeTree(updated_at) ORDER BY letter_id""",
    # `switchboard forget`'s audit: that an erasure happened and what it removed, never
    # the number (sinks/privacy.py)
    "erasures": """
        (erasure_id String, erased_at DateTime64(3, 'UTC'),
         clickhouse_rows Map(String, UInt64), kafka_records Map(String, UInt64),
         export_rows UInt64)
        ENGINE = ReplacingMergeTree ORDER BY erasure_id""",
}

# Per-minute figures by campaign and number (and account), from the window tables the
# processors publish: those already hold one row per scope and window, counted once per
# message by the processors' per-SID state. A materialized view on the raw event tables
# would count a re-delivered callback twice (it sees inserts, not the deduplicated
# table), so these read the window tables `FINAL` instead. Plain views hold no data,
# so they are replaced at every start and follow the window tables' columns.
_SCOPE = """splitByChar(':', scope)[1] AS scope_type,
       substring(scope, position(scope, ':') + 1) AS scope_value"""
VIEWS: dict[str, str] = {
    "delivery_by_minute": f"""
        SELECT window_start AS minute, {_SCOPE},
               sent, delivered, undelivered, failed, unconfirmed, delivery_rate
        FROM {{db}}.delivery_windows FINAL
        WHERE window_s = 60""",
    "mos_by_minute": f"""
        SELECT window_start AS minute, {_SCOPE},
               calls, completed, failed, duration_s, mos_count, mos_sum, mos_mean
        FROM {{db}}.call_windows FINAL
        WHERE window_s = 60""",
}

# (version, name, statements) — append only; `{db}` is the database name.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "alerts: lifecycle (fingerprint, state, repeats), silences, the count rule, version",
        [
            "ALTER TABLE {db}.alerts "
            "ADD COLUMN IF NOT EXISTS fingerprint String DEFAULT concat(type, '/', scope), "
            "ADD COLUMN IF NOT EXISTS state LowCardinality(String) DEFAULT 'firing', "
            "ADD COLUMN IF NOT EXISTS started_at DateTime64(3, 'UTC') DEFAULT raised_at, "
            "ADD COLUMN IF NOT EXISTS repeat UInt32 DEFAULT 0, "
            "ADD COLUMN IF NOT EXISTS silenced Bool DEFAULT false, "
            "ADD COLUMN IF NOT EXISTS rule LowCardinality(String) DEFAULT 'window', "
            "ADD COLUMN IF NOT EXISTS version UInt16 DEFAULT 1",
        ],
    ),
    (
        2,
        "window figures: version",
        [
            "ALTER TABLE {db}.delivery_windows ADD COLUMN IF NOT EXISTS version UInt16 DEFAULT 1",
            "ALTER TABLE {db}.call_windows ADD COLUMN IF NOT EXISTS version UInt16 DEFAULT 1",
        ],
    ),
    (
        3,
        "event tables: source of each status (callback, or reconcile from the REST API)",
        [
            f"ALTER TABLE {{db}}.{spec.table} ADD COLUMN IF NOT EXISTS "
            "source LowCardinality(String) DEFAULT 'callback'"
            for spec in SPECS.values()
        ],
    ),
]


# Retention: each table's rows go this long after the time in this column
# (SWITCHBOARD_RETENTION_EVENTS_DAYS or _AGGREGATES_DAYS); texts by their own TTL.
_EVENTS, _AGGREGATES = "retention_events_days", "retention_aggregates_days"
RETENTION: dict[str, tuple[str, str]] = {
    **{spec.table: ("received_at", _EVENTS) for spec in SPECS.values()},
    "failed_messages": ("received_at", _EVENTS),
    "forwards": ("requested_at", _EVENTS),
    "dead_letters": ("dead_at", _EVENTS),
    "delivery_windows": ("window_start", _AGGREGATES),
    "call_windows": ("window_start", _AGGREGATES),
    "alerts": ("raised_at", _AGGREGATES),
}
# Columns of what people wrote or said, kept SWITCHBOARD_RETENTION_TEXTS_DAYS when not 0
# (at 0 they are not stored: contract.privacy).
TEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    **{
        spec.table: tuple(p.column for p in spec.params if p.personal is Personal.TEXT)
        for spec in SPECS.values()
    },
    "failed_messages": ("body",),
    "forwards": ("body",),
}


def ttl_expr(column: str, days: int) -> str:
    """As ClickHouse writes it back in SHOW CREATE TABLE."""
    return f"toDateTime({column}) + toIntervalDay({days})"


_TABLE_TTL = re.compile(r"\bORDER BY .*?\bTTL (.+?)(?: SETTINGS |$)")


def apply_retention(store: Store, settings: Settings) -> None:
    """Each table's TTL (and its text columns') as the settings say, altered only where
    it differs: a changed setting reaches existing tables at the next start, and an
    unchanged one costs no mutation."""
    for table, (column, setting) in RETENTION.items():
        rows = store.query(
            "SELECT create_table_query FROM system.tables "
            "WHERE database = {db:String} AND name = {t:String}",
            {"db": store.database, "t": table + (LOCAL_SUFFIX if store.cluster else "")},
        )
        if not rows:
            continue
        created = str(rows[0][0])
        wanted = ttl_expr(column, getattr(settings, setting))
        found = _TABLE_TTL.search(created)
        if found is None or found.group(1) != wanted:
            _run(store, f"ALTER TABLE {{db}}.{table} MODIFY TTL {wanted}")
            logger.info("ClickHouse %s: rows kept until %s", table, wanted)
        days = settings.retention_texts_days
        for text in TEXT_COLUMNS.get(table, ()):
            has = re.search(rf"`{text}` [^,]*? TTL ([^,]+?)(?:,|\)$|\) ENGINE)", created)
            if days and (has is None or has.group(1) != ttl_expr(column, days)):
                _run(
                    store,
                    f"ALTER TABLE {{db}}.{table} MODIFY COLUMN {quote(text)} "
                    f"TTL {ttl_expr(column, days)}",
                )
            elif not days and has is not None:  # not stored any more: no TTL to keep
                _run(store, f"ALTER TABLE {{db}}.{table} MODIFY COLUMN {quote(text)} REMOVE TTL")


def _run(store: Store, sql: str) -> None:
    for statement in alter(store, sql.format(db=store.database)):
        store.command(statement)


def table_statements(store: Store) -> list[str]:
    """The tables and their callback columns, created if missing (every start), in order."""
    statements: list[str] = []
    for spec in SPECS.values():
        statements += create_table(store, spec.table, event_table_body(spec))
        table = store.table(spec.table)
        for name, type_ in event_columns(spec):
            statements += alter(
                store, f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {quote(name)} {type_}"
            )
    for name, body in TABLES.items():
        statements += create_table(store, name, body)
    return statements


def view_statements(store: Store) -> list[str]:
    """The staging tables and views: after the migrations, as they select columns that
    migrations add (source)."""
    statements: list[str] = []
    for spec in SPECS.values():
        table = store.table(spec.table)
        staging = EVENT_STAGING[spec.kind]
        statements += [
            f"CREATE TABLE IF NOT EXISTS {store.table(staging.table)}{_on(store)} "
            f"({staging.columns}) ENGINE = Null",
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {store.table(staging.view)}{_on(store)} "
            f"TO {table} AS {staging.select.format(db=store.database)}",
        ]
    for name, select in VIEWS.items():
        statements.append(
            f"CREATE OR REPLACE VIEW {store.table(name)}{_on(store)} "
            f"AS {select.format(db=store.database)}"
        )
    return statements


def create_statements(store: Store) -> list[str]:
    """Every table and view, as `migrate` runs them (migrations between the two)."""
    return table_statements(store) + view_statements(store)


def migration_statements(store: Store, statements: list[str]) -> list[str]:
    return [sql for given in statements for sql in alter(store, given.format(db=store.database))]


def migrate(store: Store, settings: Settings | None = None) -> None:
    """The schema; with `settings`, the retention too (see `apply_retention`)."""
    for sql in table_statements(store):
        store.command(sql)
    _apply_migrations(store)
    for sql in view_statements(store):
        store.command(sql)
    if settings is not None:
        apply_retention(store, settings)
    logger.info("ClickHouse schema ready in %s (%s)", store.database, store.dsn)


def _apply_migrations(store: Store) -> None:
    applied = {
        row[0] for row in store.query(f"SELECT version FROM {store.table('schema_migrations')}")
    }
    for version, name, statements in MIGRATIONS:
        if version in applied:
            continue
        for sql in migration_statements(store, statements):
            store.command(sql)
        store.command(
            f"INSERT INTO {store.table('schema_migrations')} (version, name) VALUES "
            "({v:UInt32}, {n:String})",
            parameters={"v": version, "n": name},
        )
        logger.info("applied ClickHouse migration %d: %s", version, name)
