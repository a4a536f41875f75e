"""Helpers for tests on the real components: stage processes, bounded waits, topics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, TopicPartition

from contract.settings import Settings
from contract.topics import Topic, topic_name

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]


def wait_for(
    check: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"
) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process build the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, tuple):
            value = ",".join(str(v) for v in value)
        field = Settings.model_fields[name]
        alias = field.validation_alias
        key = f"SWITCHBOARD_{name.upper()}"
        if alias is not None and name.startswith("signalwire_") and name != "signalwire_api_base":
            key = name.upper()
        env[key] = str(value)
    env["SWITCHBOARD_LOG_LEVEL"] = env.get("SWITCHBOARD_LOG_LEVEL", "INFO")
    return env


class Stage:
    """One `switchboard <stage>` child process, its output kept in a log file."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        log_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.args = args
        self.env = env or {}  # on top of the settings, e.g. SWITCHBOARD_FAULT
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Stage:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "switchboard", self.name, *self.args],
            env=settings_env(self.settings) | self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(  # noqa: B904 - the timeout is the message
                f"{self.name} ignored SIGTERM for {timeout} s\n{self.log()[-3000:]}"
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def read_topic(
    settings: Settings, topic: Topic, *, expect: int, timeout: float = 30.0
) -> list[Any]:
    """Read `expect` records from the start of a topic (bounded wait); fails on fewer."""
    name = topic_name(topic, settings.topic_prefix)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    md = consumer.list_topics(name, timeout=10)
    consumer.assign([TopicPartition(name, p, 0) for p in md.topics[name].partitions])
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expect and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error() is None:
                    records.append(msg)
        # a short grace period catches records beyond the expected count
        for msg in consumer.consume(num_messages=1000, timeout=0.5):
            if msg.error() is None:
                records.append(msg)
    finally:
        consumer.close()
    return records


def produce(settings: Settings, topic: Topic, records: list[tuple[str | None, bytes]]) -> None:
    """Produce (key, value) records and wait for Kafka's acknowledgement of each."""
    from confluent_kafka import Producer

    from contract.kafka import producer_config

    producer = Producer(producer_config(settings))
    failures: list[Any] = []
    name = topic_name(topic, settings.topic_prefix)
    for key, value in records:
        producer.produce(
            name,
            key=key.encode() if key else None,
            value=value,
            on_delivery=lambda err, _m: failures.append(err) if err else None,
        )
        producer.poll(0)
    left = producer.flush(30)
    assert left == 0 and not failures, f"produce to {name}: {left} unacknowledged, {failures}"


def committed(settings: Settings, group: str, topic: Topic) -> dict[int, int]:
    """The group's committed offset per partition of `topic` (negative: none)."""
    name = topic_name(topic, settings.topic_prefix)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        for attempt in range(20):
            try:
                found = consumer.committed(
                    [TopicPartition(name, p) for p in partitions], timeout=10
                )
                return {tp.partition: tp.offset for tp in found}
            except KafkaException:  # the group coordinator is still loading: retry
                if attempt == 19:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")
    finally:
        consumer.close()


def committed_total(settings: Settings, group: str, topic: Topic) -> int:
    """Records of `topic` the group has committed past, over all partitions."""
    return sum(max(0, offset) for offset in committed(settings, group, topic).values())


class Running:
    """Sink workers (anything with run/stop) on threads, stopped and joined on exit."""

    def __init__(self, *workers: Any) -> None:
        import threading

        self.workers = workers
        self.threads = [threading.Thread(target=w.run, daemon=True) for w in workers]

    def __enter__(self) -> Running:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self.workers:
            w.stop()
        for t in self.threads:
            t.join(60)
        alive = [w.name for w, t in zip(self.workers, self.threads, strict=True) if t.is_alive()]
        assert not alive, f"workers did not stop within 60 s: {alive}"


def query_store(settings: Settings, sql: str) -> list[dict[str, Any]]:
    """Run `sql` (`{db}` for the database), or `report:<name>` (a report, unfiltered), on
    the settings' ClickHouse in a fresh Python process: chDB lets one process open one
    path, and this one may hold another."""
    import json

    script = (
        "import json, sys\n"
        "from contract.settings import Settings\n"
        "from sinks.clickhouse.reports import Filters, run_report\n"
        "from sinks.clickhouse.store import Store\n"
        "store = Store.connect(Settings(), attempts=1)\n"
        "sql = sys.argv[1]\n"
        "if sql.startswith('report:'):\n"
        "    rows = run_report(store, sql.removeprefix('report:'), Filters())\n"
        "else:\n"
        "    rows = store.query_dicts(sql.replace('{db}', store.database))\n"
        "print(json.dumps(rows, default=str))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, sql],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows: list[dict[str, Any]] = json.loads(out.stdout.strip().splitlines()[-1])
    return rows
