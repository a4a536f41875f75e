"""Rows per second into ClickHouse (chDB) by batch size: through the sink's real writer
path (Kafka -> the event writer -> chDB, commit included) and for the insert alone.

The rows are the events topic's records as the processors publish them (SMS status
callbacks, about 520 bytes of JSON each), so the writer does exactly what it does in
the sink process: consume, route each record to its kind's staging table, insert the
batch (ClickHouse parses it and the view writes `sms_events`), commit. "Insert alone"
times only `Store.insert_json` of the same prepared batches. Each figure is the median
of `--runs` runs; the event table is emptied before each run.

    python -m bench.sink [--rows 200000] [--runs 5] [--batch-sizes 1000,5000,20000,100000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from confluent_kafka import ConsumerGroupState, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import REGISTRY

from bench.common import (
    bench_settings,
    fmt,
    machine_info,
    median,
    start_broker,
    write_results,
)
from contract.events import Event
from contract.kafka import admin, producer_config
from contract.kinds import CallbackKind
from contract.settings import Settings
from contract.topics import Topic, topic_name
from sinks.clickhouse.rows import event_row
from sinks.clickhouse.schema import EVENT_STAGING, STAGING_COLUMNS, migrate
from sinks.clickhouse.store import Store
from sinks.clickhouse.writer import table_writer

BATCH_SIZES = (1_000, 5_000, 20_000, 100_000)
DEFAULT_BATCH = int(Settings.model_fields["sink_batch_rows"].default)
STAGING = EVENT_STAGING[CallbackKind.SMS].table
STATUSES = ("queued", "sent", "delivered", "sent", "undelivered", "failed", "delivered")


def events(n: int) -> list[bytes]:
    start = time.time() - 3600
    out = []
    for i in range(n):
        status = STATUSES[i % len(STATUSES)]
        event = Event(
            kind=CallbackKind.SMS,
            sid=f"SM{i:032x}",
            status=status,
            received_at=start + i / 1000,
            event_time=start + i / 1000,
            campaign=f"campaign-{i % 5}",
            values={
                "message_sid": f"SM{i:032x}",
                "message_status": status,
                "error_code": "30003" if status in ("failed", "undelivered") else None,
                "account_sid": "AC0123456789abcdef0123456789abcdef",
                "from": f"+1555000{i % 1000:04d}",
                "to": f"+1666{i % 9_000_000:07d}",
                "body": "Spring sale: 20% off everything this weekend, reply STOP to opt out",
                "num_media": 0,
                "num_segments": 1,
            },
            tags={"campaign": f"campaign-{i % 5}"},
        )
        out.append(event.to_bytes())
    return out


def produce(settings: Settings, topic: str, records: list[bytes]) -> float:
    """Produce `records` in one transaction, so that a read_committed consumer (the
    sink's) sees none of them until all are there; the moment the commit began, before
    which none could be read."""
    # uncompressed, as the processors (faust's producer) publish the events topic
    producer = Producer(
        producer_config(
            settings,
            **{"linger.ms": 50, "transactional.id": f"bench-{topic}", "compression.type": "none"},
        )
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for i, value in enumerate(records):
        while True:
            try:
                producer.produce(topic, key=f"SM{i:032x}".encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)
    visible_from = time.perf_counter()
    producer.commit_transaction(120)
    return visible_from


def new_topic(settings: Settings, admin: AdminClient) -> str:
    name = topic_name(Topic.EVENTS, settings.topic_prefix)
    topic = NewTopic(name, num_partitions=settings.topic_partitions, replication_factor=1)
    admin.create_topics([topic])[name].result()
    return name


def wait_assigned(admin: AdminClient, group: str) -> None:
    """Until the group is stable, its one member holding the partitions."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            found = admin.describe_consumer_groups([group])[group].result()
        except KafkaException:
            found = None
        if (
            found is not None
            and found.state == ConsumerGroupState.STABLE
            and len(found.members) == 1
            and found.members[0].assignment.topic_partitions
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(f"group {group} did not settle")


def empty(store: Store) -> None:
    store.command(f"TRUNCATE TABLE {store.table('sms_events')}")


def count(store: Store) -> int:
    return int(store.query(f"SELECT count() FROM {store.table('sms_events')}")[0][0])


def insert_alone(store: Store, records: list[bytes], batch: int) -> tuple[float, float]:
    """(rows/s, CPU cores used) of inserting prepared batches of `batch` records."""
    payloads = [b"\n".join(records[i : i + batch]) for i in range(0, len(records), batch)]
    empty(store)
    started, cpu = time.perf_counter(), time.process_time()
    for payload in payloads:
        store.insert_json(STAGING, STAGING_COLUMNS, payload)
    wall = time.perf_counter() - started
    assert count(store) == len(records)
    return len(records) / wall, (time.process_time() - cpu) / wall


def rows_written() -> float:
    return REGISTRY.get_sample_value("switchboard_sink_rows_total", {"table": STAGING}) or 0.0


def through_writer(
    settings: Settings, store: Store, records: list[bytes], batch: int
) -> tuple[float, float]:
    """(rows/s, CPU cores used) of the sink's event writer (`table_writer`) reading
    `records` from Kafka into chDB, from the moment they could be read to the last
    insert. It joins its group on an empty topic and the records then appear at once
    (one transaction), so the group's join falls outside the measurement. Batches close
    by size only (`records` is a whole number of batches), so every row is written
    before the writer is stopped."""
    empty(store)
    client = admin(settings)
    prefix = f"{settings.topic_prefix}b{uuid.uuid4().hex[:8]}."
    run = settings.model_copy(update={"sink_batch_rows": batch, "topic_prefix": prefix})
    topic = new_topic(run, client)
    group = f"{prefix}bench"
    writer = table_writer(run, store, Topic.EVENTS, group="bench", name="bench", mapper=event_row)
    target = rows_written() + len(records)
    thread = threading.Thread(target=writer.run)
    thread.start()
    wait_assigned(client, group)
    visible_from = produce(settings, topic, records)
    cpu, cpu_since = time.process_time(), time.perf_counter()
    deadline = time.monotonic() + 600
    while rows_written() < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the writer wrote {rows_written() - target:.0f} too few rows")
        time.sleep(0.005)
    ended = time.perf_counter()
    cpu_used = time.process_time() - cpu
    writer.stop()
    thread.join(60)
    client.delete_topics([topic])
    assert count(store) == len(records)
    return len(records) / (ended - visible_from), cpu_used / (ended - cpu_since)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="events per run")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    parser.add_argument(
        "--batch-sizes",
        default=",".join(str(b) for b in BATCH_SIZES),
        help="comma-separated batch sizes (rows)",
    )
    args = parser.parse_args(argv)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    if any(args.rows % b for b in sizes):
        parser.error(f"--rows ({args.rows}) must be a multiple of every batch size")
    machine = machine_info()
    figures: dict[str, float | int | None] = {
        "rows_per_run": args.rows,
        "runs": args.runs,
    }
    table = []
    with tempfile.TemporaryDirectory(prefix="bench-sink-") as tmp:
        workdir = Path(tmp)
        broker = start_broker(workdir)
        try:
            settings = bench_settings(broker.bootstrap, workdir, sink_batch_seconds=30.0)
            store = Store.connect(settings)
            migrate(store)
            records = events(args.rows)
            for batch in sizes:
                alone = [insert_alone(store, records, batch) for _ in range(args.runs)]
                path = [through_writer(settings, store, records, batch) for _ in range(args.runs)]
                row = {
                    "batch": batch,
                    "writer": round(median(r for r, _ in path)),
                    "writer_cores": round(median(c for _, c in path), 2),
                    "insert": round(median(r for r, _ in alone)),
                    "insert_cores": round(median(c for _, c in alone), 2),
                }
                table.append(row)
                figures[f"writer_rows_per_s_batch_{batch}"] = row["writer"]
                figures[f"insert_rows_per_s_batch_{batch}"] = row["insert"]
                figures[f"writer_cpu_cores_batch_{batch}"] = row["writer_cores"]
                print(f"batch {batch:>7,}: {row}", flush=True)
            store.close()
        finally:
            broker.stop()
    machine["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    default = next((r for r in table if r["batch"] == DEFAULT_BATCH), None)
    figures["default_batch_rows"] = DEFAULT_BATCH
    figures["rows_per_s_default_batch"] = default["writer"] if default else None
    figures["insert_rows_per_s_default_batch"] = default["insert"] if default else None
    write_results("sink", figures, markdown(figures, table, machine), machine=machine)


def markdown(
    figures: dict[str, float | int | None], table: list[dict[str, float]], machine: dict
) -> str:
    lines = [
        "## Sink: rows per second into ClickHouse (chDB)",
        "",
        f"{fmt(figures['rows_per_run'])} SMS events (the events topic's records) per run, "
        f"median of {figures['runs']} runs. *Writer path*: the sink's event writer "
        "(`table_writer`, on the consumer runtime) consuming them from Kafka into chDB, "
        "first record to last insert (commits included). *Insert "
        "alone*: `Store.insert_json` of the same prepared batches. Both go through the "
        "staging table and view that write `sms_events`. Cores: CPU seconds of the "
        "benchmark process (chDB's threads included) per wall second.",
        "",
        "| batch (rows) | writer path (rows/s) | cores | insert alone (rows/s) | cores |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        mark = " (default)" if r["batch"] == figures.get("default_batch_rows") else ""
        lines.append(
            f"| {fmt(r['batch'])}{mark} | {fmt(r['writer'])} | {r['writer_cores']} "
            f"| {fmt(r['insert'])} | {r['insert_cores']} |"
        )
    rate = figures.get("rows_per_s_default_batch")
    verdict = "meets" if rate is not None and rate >= 200_000 else "does not meet"
    default = next((r for r in table if r["batch"] == figures.get("default_batch_rows")), None)
    per_row = ""
    if default is not None:
        writer_us = 1e6 * default["writer_cores"] / default["writer"]
        insert_us = 1e6 * default["insert_cores"] / default["insert"]
        per_row = (
            f" Per row at that batch the writer path used {writer_us:.1f} us of CPU: about"
            f" {insert_us:.1f} us in chDB's insert (its JSON parse and the view into"
            f" `sms_events`, as measured alone) and {max(0.0, writer_us - insert_us):.1f} us"
            " in librdkafka's fetch, a Python object per record and the mapping to rows."
        )
    lines += [
        "",
        f"At the default batch ({fmt(figures['default_batch_rows'])} rows) the writer path "
        f"{verdict} the bar of 200,000 rows/s: **{fmt(rate)} rows/s** "
        f"(insert alone {fmt(figures.get('insert_rows_per_s_default_batch'))} rows/s). "
        "The writer inserts one batch on a helper thread while it consumes the next "
        "(chDB releases the GIL), so the writer path is bounded by the CPU of the two "
        f"together, and of the broker serving the fetches, on the same two cores.{per_row}",
        "",
        f"Machine: {machine['cores']} cores ({machine['cpu_model']}); load average "
        f"{machine['load_avg_1m_at_start']} at the start and "
        f"{machine['load_avg_1m_at_end']} at the end; the reference loop took "
        f"{machine.get('cpu_reference_ms_at_start', 'n/a')} ms at the start (see Machine).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
