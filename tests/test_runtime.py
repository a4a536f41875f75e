"""The consumer runtime's own guarantees, on the real broker: every stage inherits them.

Revocation in the middle of a batch, a SIGKILL between a batch's effect and its commit
(and the static membership that lets the restarted consumer resume at once), a record
whose handling keeps raising, and a backoff longer than the group's timeouts.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import cast

import pytest
from confluent_kafka import Message
from prometheus_client import REGISTRY

from contract.kafka import sink_consumer_config
from contract.settings import Settings
from contract.topics import Topic, topic_name
from runtime.consumer import ConsumerRuntime
from runtime.strategies import Batching, PerRecord, Wait
from tests.harness import ROOT, Running, committed_total, produce, settings_env, wait_for
from tests.runtime_child import ValueSink

pytestmark = pytest.mark.kafka


class ListSink(ValueSink):
    """Batches of record values, written to a shared list; `down` makes writes fail."""

    def __init__(self, written: list[bytes], down: threading.Event) -> None:
        self.written = written
        self.down = down

    def write(self, batch: list[bytes]) -> None:
        if self.down.is_set():
            raise ConnectionError("store unreachable")
        self.written.extend(batch)


def batching(
    settings: Settings, sink: ListSink, group: str, *, name: str, instance: str = ""
) -> ConsumerRuntime:
    return ConsumerRuntime(
        settings,
        name=name,
        group=group,
        topics=[topic_name(Topic.EVENTS, settings.topic_prefix)],
        config=sink_consumer_config(settings),
        instance=instance,
        strategy=lambda rt: Batching(rt, sink, max_rows=1000, age_s=0.2, retry_max_s=0.5),
    )


def revocations(consumer: str) -> float:
    sample = REGISTRY.get_sample_value(
        "switchboard_consumer_rebalances_total", {"consumer": consumer, "how": "revoked"}
    )
    return sample or 0.0


def values(n: int, tag: str = "r", key: str | None = None) -> list[tuple[str | None, bytes]]:
    """`n` records, spread over partitions by their keys, or all of them on `key`'s."""
    return [(key or f"k{i}", f"{tag}{i}".encode()) for i in range(n)]


def test_revoked_in_the_middle_of_a_batch_it_is_given_up_and_read_again(
    topics: Settings,
) -> None:
    """A's batch cannot be written (its store is down) when B joins the group: A's
    backoff ends, its batch is dropped uncommitted, and the partitions' new owners
    write every record once the store is back. Nothing is lost, and the group commits
    past nothing it has not written."""
    written: list[bytes] = []
    down = threading.Event()
    down.set()
    group = topics.topic_prefix + "revoke"
    produce(topics, Topic.EVENTS, values(300))
    a = batching(topics, ListSink(written, down), group, name="a")
    revoked_before = revocations("a")
    with Running(a):
        held = cast(Batching[list[bytes]], a.strategy)
        wait_for(lambda: held._writing is not None, what="A holding a batch it cannot write")
        b = batching(topics, ListSink(written, down), group, name="b")
        with Running(b):
            wait_for(
                lambda: revocations("a") > revoked_before, what="B's join to revoke A's partitions"
            )
            wait_for(lambda: b._consumer.assignment(), what="B's share of the partitions")
            assert committed_total(topics, group, Topic.EVENTS) == 0
            assert written == []
            down.clear()
            wait_for(
                lambda: committed_total(topics, group, Topic.EVENTS) == 300,
                timeout=60,
                what="every record written and committed by the new owners",
            )
    assert sorted(set(written)) == sorted(v for _, v in values(300))


def test_killed_between_effect_and_commit_it_restarts_at_once_and_writes_again(
    topics: Settings, tmp_path: Path
) -> None:
    """The child writes its first batch, then is SIGKILLed before the commit. Restarted
    with the same instance id it takes its partitions back within seconds, though the
    group's session timeout is 45 s, and writes that batch again: its effect came
    before its commit, so nothing is lost, and the repeat is the idempotent kind."""
    topic = topic_name(Topic.EVENTS, topics.topic_prefix)
    group = topics.topic_prefix + "child"
    out = tmp_path / "effects.txt"
    produce(topics, Topic.EVENTS, values(200))
    args = [sys.executable, "-m", "tests.runtime_child", topics.kafka_bootstrap, topic, group]
    env = settings_env(topics)
    crashing = subprocess.Popen(
        [*args, str(out), "sink-1"], env=env | {"SWITCHBOARD_FAULT": "child:after-write"}, cwd=ROOT
    )
    assert crashing.wait(60) == -9, "the child should have SIGKILLed itself at the fault"
    first = out.read_bytes().splitlines()
    assert first, "the batch was written before the kill"
    assert committed_total(topics, group, Topic.EVENTS) == 0

    restarted_at = time.monotonic()
    child = subprocess.Popen([*args, str(out), "sink-1"], env=env, cwd=ROOT)
    try:
        wait_for(
            lambda: committed_total(topics, group, Topic.EVENTS) == 200,
            timeout=40,
            what="the restarted child committing everything",
        )
        resumed_s = time.monotonic() - restarted_at
        child.terminate()
        assert child.wait(30) == 0
    finally:
        if child.poll() is None:
            child.kill()
    effects = out.read_bytes().splitlines()
    assert set(effects) == {v for _, v in values(200)}
    assert len(effects) == 200 + len(first)  # the uncommitted batch, once more
    # a new member would wait out the old one's 45 s session first
    assert resumed_s < 15, f"resumed after {resumed_s:.1f} s"


def test_a_record_that_keeps_failing_is_dead_lettered_and_the_rest_go_on(
    topics: Settings,
) -> None:
    settings = topics.model_copy(update={"record_max_attempts": 3})
    handled: list[bytes] = []
    tries: list[bytes] = []
    dead: list[tuple[bytes, str]] = []

    def handle(msg: Message, wait: Wait) -> bool:
        tries.append(msg.value() or b"")
        if msg.value() == b"poison":
            raise ValueError("cannot read this")
        handled.append(msg.value() or b"")
        return True

    def dead_letter(msg: Message, reason: str, wait: Wait) -> bool:
        dead.append((msg.value() or b"", reason))
        return True

    group = settings.topic_prefix + "poison"
    runtime = ConsumerRuntime(
        settings,
        name="poison",
        group=group,
        topics=[topic_name(Topic.FORWARDS, settings.topic_prefix)],
        config=sink_consumer_config(settings),
        strategy=lambda rt: PerRecord(rt, handle, dead_letter, attempts=3),
    )
    produce(settings, Topic.FORWARDS, [("k", b"one"), ("k", b"poison"), ("k", b"two")])
    with Running(runtime):
        wait_for(
            lambda: committed_total(settings, group, Topic.FORWARDS) == 3,
            timeout=30,
            what="all three records acknowledged",
        )
    assert handled == [b"one", b"two"]
    assert tries.count(b"poison") == 3
    assert dead == [(b"poison", "ValueError: cannot read this")]


def test_a_backoff_longer_than_the_group_timeouts_keeps_the_partitions(
    topics: Settings,
) -> None:
    """The handler backs off for 12 s on its first record; the session timeout is 6 s
    and the poll interval 7 s. The runtime's paused polling keeps the member in its
    group: no rebalance, no record handed over meanwhile, and everything committed
    after."""
    handled: list[tuple[float, bytes]] = []
    revoked: list[object] = []
    started = time.monotonic()

    def handle(msg: Message, wait: Wait) -> bool:
        if not handled and not wait(12):
            return False
        handled.append((time.monotonic() - started, msg.value() or b""))
        return True

    group = topics.topic_prefix + "backoff"
    runtime = ConsumerRuntime(
        topics,
        name="backoff",
        group=group,
        topics=[topic_name(Topic.FORWARDS, topics.topic_prefix)],
        config={"session.timeout.ms": 6000, "max.poll.interval.ms": 7000},
        strategy=lambda rt: PerRecord(rt, handle, lambda *_: True, attempts=1),
        instance="",
    )
    real_revoke = runtime.strategy.revoke

    def revoke(settle: bool) -> None:
        revoked.append(settle)
        real_revoke(settle)

    runtime.strategy.revoke = revoke  # type: ignore[method-assign]
    produce(topics, Topic.FORWARDS, values(5, "b", key="one-partition"))
    with Running(runtime):
        wait_for(
            lambda: committed_total(topics, group, Topic.FORWARDS) == 5,
            timeout=60,
            what="all five committed after the backoff",
        )
    assert [v for _, v in handled] == [v for _, v in values(5, "b")]
    assert handled[0][0] >= 12  # nothing was handed over during the backoff
    assert revoked == [True]  # only the revocation of the final stop
