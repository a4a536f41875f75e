"""Helpers for tests on the real components: stage processes, bounded waits, topics."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from contract.kafka import client_config, producer_config
from contract.settings import Settings
from contract.topics import Topic, topic_name
from processors.intake import intake_group
from switchboard.broker import LocalBroker, free_port

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
# In CI, generated-input tests replay the same examples every run: a red build then means
# a change broke something, not that the dice found something new (run locally to explore).
CI = bool(os.environ.get("CI"))


def wait_for(
    check: Callable[[], T | Literal[False] | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | Literal[False] | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def isolated_settings(bootstrap: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings of one test's pipeline: its own topic prefix, database, ports and data
    directory (the embedded store in it unless `overrides` say otherwise)."""
    tag = uuid.uuid4().hex[:10]
    fields: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "topic_prefix": f"t{tag}.",
        "topic_partitions": 2,
        "data_dir": data_dir,
        "clickhouse_url": f"chdb://{data_dir / 'ch'}",
        "clickhouse_database": f"test_{tag}",
        "sink_batch_seconds": 0.2,
        "process_web_port": free_port(),
        "api_port": free_port(),
        "ingest_port": free_port(),
        "api_token": "test-token",
    }
    return Settings(_env_file=None, **(fields | overrides))  # type: ignore[call-arg]


def secure_settings(
    broker: LocalBroker, data_dir: Path, mechanism: str = "SCRAM-SHA-256", **overrides: Any
) -> Settings:
    """`isolated_settings` of a client of a secure `LocalBroker`, as its users would set
    them (`broker.client_env()`), with `overrides` on top."""
    client = {
        name.removeprefix("SWITCHBOARD_").lower(): value
        for name, value in broker.client_env(mechanism).items()
    }
    return isolated_settings(broker.bootstrap, data_dir, **(client | overrides))


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
        if name == "accounts":  # JSON, secrets revealed as they were given
            value = json.dumps(
                {sid: a.model_dump(exclude_none=True) for sid, a in value.items()},
                default=lambda secret: secret.get_secret_value(),
            )
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
        with open(self.log_path, "ab") as log:  # the child keeps its own fd
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
        client_config(settings)
        | {
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
            batch = consumer.consume(num_messages=1000, timeout=0.5)
            records.extend(msg for msg in batch if msg.error() is None)
        # a short grace period catches records beyond the expected count
        batch = consumer.consume(num_messages=1000, timeout=0.5)
        records.extend(msg for msg in batch if msg.error() is None)
    finally:
        consumer.close()
    return records


def chdb_rows(dsn: str, database: str, sql: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Run a query on an embedded store from a fresh process (chDB allows one path per
    process, and the pytest process may already hold another)."""
    script = (
        "import sys, json, clickhouse_connect\n"
        "c = clickhouse_connect.get_client(dsn=sys.argv[1])\n"
        "r = c.query(sys.argv[2].replace('{db}', sys.argv[3]))\n"
        "rows = [dict(zip(r.column_names, row)) for row in r.result_rows]\n"
        "print(json.dumps(rows, default=str))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, dsn, sql, database],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise AssertionError(f"query on {dsn} failed: {out.stderr[-2000:]}")
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def post_form(url: str, params: dict[str, str], timeout: float = 10) -> int:
    """POST a form the way the provider does; the HTTP status, or 0 if no answer."""
    body = urllib.parse.urlencode(params).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def group_lag(settings: Settings, group: str, topic: Topic) -> int:
    """Records on `topic` that consumer group `group` has not committed yet."""
    name = topic_name(topic, settings.topic_prefix)
    with _looking_at(settings, group) as consumer:
        lag = 0
        for partition, offset in _committed(consumer, name).items():
            _, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)
            lag += high - max(offset, 0)
        return lag


def drained(settings: Settings) -> bool:
    """The processors, the event writer and the dead-letter writer have committed
    everything on their inputs."""
    processors = intake_group(settings)  # the raw topics; faust's group reads the transitions
    sink = f"{settings.topic_prefix}switchboard-sink-events"
    dead_letters = f"{settings.topic_prefix}switchboard-sink-dead-letters"
    raw = sum(
        group_lag(settings, processors, t)
        for t in (
            Topic.CALLBACKS_SMS,
            Topic.CALLBACKS_VOICE,
            Topic.CALLBACKS_RECORDING,
            Topic.CALLBACKS_TRANSCRIPTION,
            Topic.CALLBACKS_INBOUND_CALL,
        )
    )
    return (
        raw == 0
        and group_lag(settings, sink, Topic.EVENTS) == 0
        and group_lag(settings, dead_letters, Topic.CALLBACKS_DEAD_LETTER) == 0
    )


@contextlib.contextmanager
def serve_in_thread(app: Any, port: int, *, timeout: float = 30.0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1:port in a thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=timeout, what=f"uvicorn on port {port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def records_on_topics(settings: Settings, timeout: float = 30.0) -> dict[str, int]:
    """How many records each of the test's topics (its prefix) holds, from the watermarks."""
    consumer = Consumer(client_config(settings) | {"group.id": f"counter-{time.time_ns()}"})
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                counts = {}
                for name, md in consumer.list_topics(timeout=10).topics.items():
                    if not name.startswith(settings.topic_prefix):
                        continue
                    counts[name] = 0
                    for partition in md.partitions:
                        low, high = consumer.get_watermark_offsets(
                            TopicPartition(name, partition), timeout=10
                        )
                        counts[name] += high - low
                return counts
            except KafkaException:  # a new topic's leader is not known everywhere yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


def warm_idempotence(settings: Settings, timeout: float = 60.0) -> None:
    """Wait until the broker hands out idempotent producer ids. A fresh broker takes
    seconds for its first one, longer than the edge's produce timeout, so a test's first
    callback would get a (correct) 503. The record goes to a topic outside the test's prefix."""
    producer = Producer(client_config(settings) | {"enable.idempotence": True})
    producer.produce("switchboard-tests-warmup", b"warm")
    if producer.flush(timeout) != 0:
        raise AssertionError(f"no idempotent producer id within {timeout:.0f} s")


def produce(settings: Settings, topic: Topic, records: Sequence[tuple[str | None, bytes]]) -> None:
    """Produce (key, value) records and wait for Kafka's acknowledgement of each."""
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


@contextlib.contextmanager
def _looking_at(settings: Settings, group: str) -> Iterator[Consumer]:
    """A consumer in `group` that only reads the group's offsets: it never subscribes."""
    consumer = Consumer(
        client_config(settings)
        | {
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    try:
        yield consumer
    finally:
        consumer.close()


def _committed(consumer: Consumer, name: str) -> dict[int, int]:
    partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
    for attempt in range(20):
        try:
            found = consumer.committed([TopicPartition(name, p) for p in partitions], timeout=10)
            return {tp.partition: tp.offset for tp in found}
        except KafkaException:  # the group coordinator is still loading: retry
            if attempt == 19:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def committed(settings: Settings, group: str, topic: Topic) -> dict[int, int]:
    """The group's committed offset per partition of `topic` (negative: none)."""
    with _looking_at(settings, group) as consumer:
        return _committed(consumer, topic_name(topic, settings.topic_prefix))


def committed_total(settings: Settings, group: str, topic: Topic) -> int:
    """Records of `topic` the group has committed past, over all partitions."""
    return sum(max(0, offset) for offset in committed(settings, group, topic).values())


class Running:
    """Sink workers (anything with run/stop) on threads, stopped and joined on exit."""

    def __init__(self, *workers: Any) -> None:
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


@contextmanager
def event_writer(settings: Settings, store: Any) -> Iterator[Any]:
    """The ClickHouse event writer on a thread of the test process, on the test's store."""
    from sinks.clickhouse.rows import event_row
    from sinks.clickhouse.writer import table_writer

    writer = table_writer(
        settings, store, Topic.EVENTS, group="sink", name="events", mapper=event_row
    )
    thread = threading.Thread(target=writer.run)
    thread.start()
    try:
        yield writer
    finally:
        writer.stop()
        thread.join(30)
