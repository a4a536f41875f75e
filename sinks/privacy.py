"""Erasure of a phone number from every store, and the exports' retention.

`forget(settings, store, number)` removes a number everywhere Switchboard keeps it, in
the pipeline's order, so that nothing written from a record it removed comes back:

1. Kafka, topic by topic from the edge down (raw callbacks, then what the processors
   and sinks made of them). Every record of a topic is read; a record holds the number
   when its key or value contains its digits (the raw, `+`-prefixed and URL-encoded
   forms all do) or, with hashed numbers, its token. Records of an append-only topic
   cannot be deleted one by one: once every Switchboard consumer group has committed
   past the last such record of a partition, the partition's records up to it are
   deleted (Kafka's DeleteRecords). That deletes the other records before it too;
   they have been handled already (their rows are in ClickHouse, which is the record),
   and a subscriber of your own that has not read them by then misses them. A
   compacted topic gets a tombstone for each key whose record holds the number, and
   the per-SID state gets one for each SID of the number; Kafka's log cleaner drops
   the earlier records after that (not at once: `delete.retention.ms` and the
   segment that is still written to hold them until the cleaner runs).
2. ClickHouse: every row of every table that contains the number, and every row of
   the same messages and calls (their SIDs: a call's recordings and transcriptions,
   forwards, failed-message rows, dead letters), deleted with a mutation that is
   waited for (`mutations_sync`). Mutations name the rows by a hash of their sort key,
   never by the number, since ClickHouse keeps the text of recent mutations.
3. The exports directory: CSV rows that contain the number are removed from each file.

Then an audit row in `erasures` says an erasure happened and what it removed, without
the number. Run again, it finds nothing more: it is idempotent.
"""

from __future__ import annotations

import csv
import io
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource

from contract.errors import SwitchboardError
from contract.kafka import admin, client_config, producer_config
from contract.privacy import digits, stored_forms
from contract.settings import Settings
from contract.topics import Topic, topic_name
from sinks.clickhouse.store import Store

logger = logging.getLogger(__name__)

MIN_DIGITS = 7  # fewer would match parts of other numbers, SIDs and times
# Topics in the pipeline's order: each is read after its producers' inputs were handled.
PIPELINE = (
    Topic.CALLBACKS_SMS,
    Topic.CALLBACKS_VOICE,
    Topic.CALLBACKS_RECORDING,
    Topic.CALLBACKS_TRANSCRIPTION,
    Topic.CALLBACKS_INBOUND_CALL,
    Topic.CALLBACKS_DEAD_LETTER,
    Topic.EVENTS,
    Topic.SID_STATE,
    Topic.TRANSITIONS,
    Topic.FORWARDS,
    Topic.FORWARDS_DEAD_LETTER,
    Topic.METRICS_DELIVERY,
    Topic.METRICS_CALLS,
    Topic.ALERTS,
    Topic.SILENCES,
)
# Columns that name a message, call, recording, transcription or forward by its SID.
SID_COLUMNS = (
    "message_sid",
    "call_sid",
    "recording_sid",
    "transcription_sid",
    "sid",
    "forward_id",
)
_STATE_PREFIXES = (b"m:", b"c:", b"r:", b"t:")  # processors.state.state_key
_KEYED_BY_SID = frozenset(PIPELINE[:5]) | {Topic.EVENTS}
_NOT_SEARCHED = frozenset({"schema_migrations", "erasures"})
DELETE_CHUNK = 10_000  # sort-key hashes per mutation

Progress = Callable[[str, int, int], None]  # (what, done, total)


def _no_progress(_what: str, _done: int, _total: int) -> None:
    pass


@dataclass
class TopicErasure:
    holding: int = 0  # records that held the number
    deleted: int = 0  # records deleted (with the others before them), or tombstones
    tombstones: int = 0


@dataclass
class Erasure:
    erasure_id: str
    dry_run: bool
    rows: dict[str, int] = field(default_factory=dict)  # ClickHouse table -> rows
    topics: dict[str, TopicErasure] = field(default_factory=dict)
    exports: dict[str, int] = field(default_factory=dict)  # file -> CSV rows

    def to_json(self) -> dict[str, Any]:
        return {
            "erasure_id": self.erasure_id,
            "dry_run": self.dry_run,
            "clickhouse": self.rows,
            "kafka": {
                name: {"holding": t.holding, "deleted": t.deleted, "tombstones": t.tombstones}
                for name, t in self.topics.items()
            },
            "exports": self.exports,
        }


def check_number(number: str) -> str:
    found = digits(number)
    if len(found) < MIN_DIGITS:
        raise SwitchboardError(
            f"not a phone number: {len(found)} digits (at least {MIN_DIGITS} are needed, "
            "so that no other number, SID or time matches)"
        )
    return found


def forget(
    settings: Settings,
    store: Store,
    number: str,
    *,
    dry_run: bool = False,
    progress: Progress = _no_progress,
    wait_s: float = 60.0,
) -> Erasure:
    check_number(number)
    forms = stored_forms(settings, number)
    erasure = Erasure(uuid.uuid4().hex, dry_run)
    logger.info("erasure %s started (dry run: %s)", erasure.erasure_id, dry_run)
    sids = set(_clickhouse_sids(store, forms))
    erasure.topics = _kafka(
        settings, forms, sids, dry_run=dry_run, progress=progress, wait_s=wait_s
    )
    # rows written from the records the stages handled meanwhile, and their SIDs
    sids.update(_clickhouse_sids(store, forms))
    erasure.rows = _clickhouse(store, forms, sorted(sids), dry_run=dry_run, progress=progress)
    erasure.exports = _exports(settings.exports_path, forms, dry_run=dry_run)
    if not dry_run:
        _audit(store, erasure)
    logger.info(
        "erasure %s done: %d ClickHouse rows, %d Kafka records, %d export rows",
        erasure.erasure_id,
        sum(erasure.rows.values()),
        sum(t.holding for t in erasure.topics.values()),
        sum(erasure.exports.values()),
    )
    return erasure


# --- ClickHouse ---


def _tables(store: Store) -> dict[str, tuple[list[str], str]]:
    """Our MergeTree tables: their columns and sort key."""
    rows = store.query(
        "SELECT name, sorting_key FROM system.tables WHERE database = {db:String} "
        "AND engine LIKE '%MergeTree' ORDER BY name",
        {"db": store.database},
    )
    columns: dict[str, list[str]] = defaultdict(list)
    for table, column in store.query(
        "SELECT table, name FROM system.columns WHERE database = {db:String} ORDER BY position",
        {"db": store.database},
    ):
        columns[str(table)].append(str(column))
    return {
        str(name): (columns[str(name)], str(key))
        for name, key in rows
        if str(name) not in _NOT_SEARCHED
    }


def _holds(columns: list[str]) -> str:
    """Rows whose text anywhere holds one of `{forms}`."""
    every = ", ".join(f"`{c}`" for c in columns)
    return f"multiSearchAny(toString(tuple({every})), {{forms:Array(String)}})"


def _of_sids(columns: list[str]) -> str:
    named = [c for c in SID_COLUMNS if c in columns]
    return " OR ".join(f"ifNull(toString(`{c}`), '') IN {{sids:Array(String)}}" for c in named)


def _clickhouse_sids(store: Store, forms: list[str]) -> list[str]:
    """The SIDs of the rows that hold the number: of its messages and calls."""
    found: set[str] = set()
    for table, (columns, _) in _tables(store).items():
        named = [c for c in SID_COLUMNS if c in columns and c != "forward_id"]
        if not named:
            continue
        select = ", ".join(f"ifNull(toString(`{c}`), '')" for c in named)
        for row in store.query(
            f"SELECT DISTINCT {select} FROM {store.table(table)} WHERE {_holds(columns)}",
            {"forms": forms},
        ):
            found.update(str(v) for v in row if v)
    return sorted(found)


def _clickhouse(
    store: Store, forms: list[str], sids: list[str], *, dry_run: bool, progress: Progress
) -> dict[str, int]:
    removed: dict[str, int] = {}
    for table, (columns, key) in _tables(store).items():
        where = _holds(columns)
        if sids and (by_sid := _of_sids(columns)):
            where = f"{where} OR {by_sid}"
        hashes = [
            int(row[0])
            for row in store.query(
                f"SELECT cityHash64({key}) FROM {store.table(table)} WHERE {where}",
                {"forms": forms, "sids": sids},
            )
        ]
        if not hashes:
            continue
        removed[table] = len(hashes)
        if dry_run:
            continue
        distinct = sorted(set(hashes))
        for start in range(0, len(distinct), DELETE_CHUNK):
            chunk = distinct[start : start + DELETE_CHUNK]
            # mutations_sync=2: returns once the rows are gone from every part (and replica)
            store.command(
                f"ALTER TABLE {store.table(table)} DELETE WHERE cityHash64({key}) IN "
                "{hashes:Array(UInt64)} SETTINGS mutations_sync = 2",
                {"hashes": chunk},
            )
            progress(f"ClickHouse {table}", start + len(chunk), len(distinct))
        logger.info("erasure: deleted %d rows of %s", len(hashes), table)
    return removed


def _audit(store: Store, erasure: Erasure) -> None:
    row = {
        "erasure_id": erasure.erasure_id,
        "erased_at": time.time(),
        "clickhouse_rows": erasure.rows,
        "kafka_records": {n: t.holding for n, t in erasure.topics.items() if t.holding},
        "export_rows": sum(erasure.exports.values()),
    }
    store.insert_json("erasures", list(row), orjson.dumps(row))


# --- Kafka ---


def _kafka(
    settings: Settings,
    forms: list[str],
    sids: set[str],
    *,
    dry_run: bool,
    progress: Progress,
    wait_s: float,
) -> dict[str, TopicErasure]:
    """`sids` gains the SIDs (keys) of the raw callbacks and events that hold the number,
    for the per-SID state's tombstones and ClickHouse."""
    client = admin(settings)
    existing = client.list_topics(timeout=10).topics
    needles = [f.encode() for f in forms]
    out: dict[str, TopicErasure] = {}
    producer = None if dry_run else Producer(producer_config(settings))
    for topic in PIPELINE:
        name = topic_name(topic, settings.topic_prefix)
        if name not in existing:
            continue
        compacted = _compacted(client, name)
        state_keys = (
            {prefix + sid.encode() for sid in sids for prefix in _STATE_PREFIXES}
            if topic is Topic.SID_STATE
            else set()
        )
        hits, keys = _scan(settings, name, needles, state_keys, progress)
        if topic in _KEYED_BY_SID:
            sids.update(key.decode(errors="replace") for _, key in keys)
        result = TopicErasure(holding=sum(len(offsets) for offsets in hits.values()))
        if compacted:
            # the latest record of a key holding the number, or a SID of the number
            doomed = {(p, k) for p, k in keys}
            result.tombstones = len(doomed)
            if producer is not None and doomed:
                for partition, key in sorted(doomed):
                    producer.produce(name, key=key, value=None, partition=partition)
                if producer.flush(30):
                    raise SwitchboardError(f"Kafka did not take the tombstones for {name}")
        elif hits:
            upto = {p: max(offsets) + 1 for p, offsets in hits.items()}
            if not dry_run:
                _wait_for_groups(settings, client, name, upto, wait_s)
                result.deleted = _delete_records(client, settings, name, upto)
        if result.holding or result.tombstones:
            out[name] = result
            logger.info(
                "erasure: %s: %d records held the number; %d deleted, %d tombstones",
                name,
                result.holding,
                result.deleted,
                result.tombstones,
            )
    faust_changelogs = [
        n for n in existing if n.startswith(f"{settings.topic_prefix}switchboard-processors-")
    ]
    for name in faust_changelogs:  # the window agent's tables: scopes of our own numbers
        hits, keys = _scan(settings, name, needles, set(), progress)
        if keys:
            out[name] = TopicErasure(holding=len(keys), tombstones=len(keys))
            if producer is not None:
                for partition, key in sorted(keys):
                    producer.produce(name, key=key, value=None, partition=partition)
                producer.flush(30)
    return out


def _compacted(client: AdminClient, name: str) -> bool:
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    config = client.describe_configs([resource])[resource].result()
    policy = config.get("cleanup.policy")
    return (
        policy is not None and "compact" in str(policy.value) and "delete" not in str(policy.value)
    )


def _scan(
    settings: Settings,
    name: str,
    needles: list[bytes],
    state_keys: set[bytes],
    progress: Progress,
) -> tuple[dict[int, list[int]], set[tuple[int, bytes]]]:
    """Every record of `name`: the offsets, by partition, of those that hold a needle,
    and the (partition, key) of the records holding one or keyed by `state_keys`."""
    consumer = Consumer(
        client_config(settings)
        | {"group.id": f"switchboard-forget-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    hits: dict[int, list[int]] = defaultdict(list)
    keys: set[tuple[int, bytes]] = set()
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        ends: dict[int, int] = {}
        starts: dict[int, int] = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            if high > low:
                starts[p], ends[p] = low, high
        total = sum(ends[p] - starts[p] for p in ends)
        if not total:
            return hits, keys
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in ends])
        done = 0
        left = dict(ends)
        deadline = time.monotonic() + 300
        while left and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=5000, timeout=0.1):
                if msg.error() is not None:
                    continue
                p, offset = msg.partition(), msg.offset()
                if p is None or offset is None or p not in left or offset >= ends[p]:
                    continue
                key, value = msg.key() or b"", msg.value() or b""
                if any(n in value or n in key for n in needles):
                    hits[p].append(offset)
                    keys.add((p, key))
                elif key in state_keys:
                    keys.add((p, key))
                done += 1
            # by position, not by the last record seen: compaction and transaction
            # markers leave offsets no record is read at
            for tp in consumer.position([TopicPartition(name, p) for p in left]):
                if tp.offset >= ends[tp.partition]:
                    del left[tp.partition]
            progress(f"Kafka {name}", done, total)
        if left:
            raise SwitchboardError(f"reading {name} took over 300 s; nothing deleted from it")
    finally:
        consumer.close()
    return hits, {(p, k) for p, k in keys if k}


def _wait_for_groups(
    settings: Settings, client: AdminClient, name: str, upto: dict[int, int], wait_s: float
) -> None:
    """Until every Switchboard consumer group reading `name` has committed past `upto`:
    deleting a record that a stage has not handled would lose it."""
    ours = f"{settings.topic_prefix}switchboard"
    groups = [
        g.group_id
        for g in client.list_consumer_groups(request_timeout=10).result().valid
        if g.group_id.startswith(ours)
    ]
    deadline = time.monotonic() + wait_s
    for group in groups:
        while True:
            request = [ConsumerGroupTopicPartitions(group, [TopicPartition(name, p) for p in upto])]
            try:
                result = client.list_consumer_group_offsets(request)[group].result()
            except KafkaException:
                result = None
            behind = [
                tp.partition
                for tp in (result.topic_partitions if result else [])
                if tp.offset >= 0 and tp.offset < upto[tp.partition]
            ]
            if result is not None and not behind:
                break
            if time.monotonic() > deadline:
                raise SwitchboardError(
                    f"consumer group {group} has not handled {name} partitions {behind} up "
                    f"to the number's last record within {wait_s:.0f} s; nothing deleted from "
                    "it. Is the stage running? Run `switchboard forget` again once it caught up"
                )
            time.sleep(0.5)


def _delete_records(
    client: AdminClient, settings: Settings, name: str, upto: dict[int, int]
) -> int:
    consumer = Consumer(client_config(settings) | {"group.id": "switchboard-forget-watermarks"})
    try:
        before = {
            p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[0] for p in upto
        }
    finally:
        consumer.close()
    futures = client.delete_records([TopicPartition(name, p, offset) for p, offset in upto.items()])
    for future in futures.values():
        future.result()
    return sum(max(0, upto[p] - before[p]) for p in upto)


# --- exports ---


def _exports(directory: Path, forms: list[str], *, dry_run: bool) -> dict[str, int]:
    """CSV rows holding the number, by file; removed unless `dry_run`."""
    removed: dict[str, int] = {}
    if not directory.is_dir():
        return removed
    for path in sorted(directory.glob("*.csv")):
        text = path.read_text(errors="replace")
        if not any(form in text for form in forms):
            continue
        rows = list(csv.reader(io.StringIO(text)))
        kept = [row for row in rows if not any(f in cell for cell in row for f in forms)]
        removed[path.name] = len(rows) - len(kept)
        if dry_run:
            continue
        out = io.StringIO()
        csv.writer(out).writerows(kept)
        path.write_text(out.getvalue())
        logger.info("erasure: removed %d rows from %s", removed[path.name], path.name)
    return removed


def prune_exports(settings: Settings, now: float | None = None) -> list[Path]:
    """Removes export files older than SWITCHBOARD_RETENTION_EXPORTS_DAYS; what it removed."""
    directory = settings.exports_path
    if not directory.is_dir():
        return []
    before = (time.time() if now is None else now) - settings.retention_exports_days * 86400
    removed = []
    for path in directory.glob("*.csv"):
        try:
            if path.stat().st_mtime < before:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue
    if removed:
        logger.info(
            "removed %d export files older than %d days",
            len(removed),
            settings.retention_exports_days,
        )
    return removed
