"""The reconcile stage: a strategy on the consumer runtime, and the pass it runs.

`Reconciler.run` fetches candidates (`reconcile.stuck`) through the paced provider on
`reconcile_concurrency` threads, publishes a synthetic callback for each whose status
the provider has moved on, records each fetch on `reconcile.checks`, and waits for
Kafka to acknowledge all of it. `ReconcileStrategy` follows `processors.sid-state`
in the group `switchboard-reconcile` (see the package docstring) and runs a pass every
`reconcile_interval_s` on a helper thread, so the consumer keeps its group however long
a pass takes; a revocation or a stop interrupts the pass and waits for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from prometheus_client import Counter, Gauge

from contract.errors import DeliveryFailed
from contract.kafka import client_config, producer_config
from contract.kinds import CallbackKind
from contract.settings import Settings
from contract.topics import Topic, topic_name
from processors.replay import read_to_end
from reconcile import synthetic
from reconcile.provider import Provider, ProviderError, Resource
from reconcile.stuck import MESSAGE_KINDS, Candidate, StuckIndex, check_record
from runtime.consumer import ConsumerRuntime, Offsets

logger = logging.getLogger(__name__)

ACK_TIMEOUT_S = 60.0
# A first read can come back empty before the fetch of a new assignment arrives: only
# this long after the assignment does an empty read mean the end.
IDLE_CAUGHT_UP_S = 10.0


class Outcome(StrEnum):
    CHANGED = "changed"  # the provider knew more: a synthetic callback was published
    UNCHANGED = "unchanged"
    NOT_FOUND = "not_found"  # the provider does not know the SID
    ERROR = "error"  # no answer after the tries


CHECKED = Counter(
    "switchboard_reconcile_checked_total",
    "Stuck SIDs fetched, by kind and outcome",
    ["kind", "outcome"],
)
STUCK = Gauge("switchboard_reconcile_stuck", "SIDs not final that this worker follows")
DUE = Gauge("switchboard_reconcile_due", "Stuck SIDs due for a fetch at the last pass")


@dataclass(slots=True)
class Tally:
    checked: int = 0
    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    changes: list[tuple[str, str | None, str]] = field(default_factory=list)  # sid, from, to

    def add(self, outcome: Outcome) -> None:
        self.checked += 1
        self.counts[outcome] += 1


def group(settings: Settings) -> str:
    return f"{settings.topic_prefix}switchboard-reconcile"


class Reconciler:
    """Fetch, publish, record. Thread-safe for one pass at a time."""

    def __init__(
        self,
        settings: Settings,
        provider: Provider,
        producer: Producer,
        index: StuckIndex,
        *,
        dry_run: bool = False,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.producer = producer
        self.index = index
        self.dry_run = dry_run
        self._errors: list[KafkaError] = []

    def _acked(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            logger.error(
                "reconcile: delivery to %s failed key=%s: %s", message.topic(), message.key(), error
            )
            self._errors.append(error)

    def _produce(self, topic: str, key: bytes, value: bytes | None, partition: int | None) -> None:
        args: dict[str, object] = {"key": key, "value": value, "on_delivery": self._acked}
        if partition is not None:
            args["partition"] = partition
        while True:
            try:
                self.producer.produce(topic, **args)  # type: ignore[arg-type]
                return
            except BufferError:
                self.producer.poll(0.05)

    def fetch(self, kind: CallbackKind, sid: str) -> Resource | None:
        if kind in MESSAGE_KINDS:
            return self.provider.fetch_message(sid)
        return self.provider.fetch_call(sid)

    def publish(
        self, kind: CallbackKind, resource: Resource, tags: dict[str, str], known_at: float
    ) -> None:
        envelope = synthetic.callback(kind, resource, tags=tags, known_at=known_at, now=time.time())
        self._produce(
            topic_name(kind.spec.raw_topic, self.settings.topic_prefix),
            envelope.sid.encode(),
            envelope.to_bytes(),
            None,  # the edge's partitioner, by the SID: the partition that holds its state
        )

    def _one(self, candidate: Candidate) -> tuple[Outcome, str | None]:
        s = candidate.stuck
        try:
            resource = self.fetch(s.kind, s.sid)
        except ProviderError as exc:
            logger.error("reconcile sid=%s status=%s: %s", s.sid, s.status, exc)
            return Outcome.ERROR, None
        now = time.time()
        if resource is None:
            logger.warning("reconcile sid=%s status=%s: not found at the provider", s.sid, s.status)
            outcome, status = Outcome.NOT_FOUND, None
        elif synthetic.advances_on(s.kind, s.status, resource):
            status = str(resource["status"])
            logger.info(
                "reconcile sid=%s status=%s -> %s (source=reconcile)", s.sid, s.status, status
            )
            if not self.dry_run:
                self.publish(s.kind, resource, s.tags, s.changed_at)
            outcome = Outcome.CHANGED
        else:
            status = str(resource.get("status"))
            logger.debug(
                "reconcile sid=%s status=%s: the provider says %s", s.sid, s.status, status
            )
            outcome = Outcome.UNCHANGED
        if not self.dry_run:
            self._produce(
                topic_name(Topic.RECONCILE_CHECKS, self.settings.topic_prefix),
                candidate.key.encode(),
                check_record(now, status),
                candidate.partition,
            )
        return outcome, status

    def run(
        self,
        candidates: Iterable[Candidate],
        *,
        progress: Callable[[Outcome], None] | None = None,
    ) -> Tally:
        """Fetch every candidate; Kafka has acknowledged every publication on return."""
        tally = Tally()
        todo = list(candidates)
        DUE.set(len(todo))
        with ThreadPoolExecutor(
            self.settings.reconcile_concurrency, thread_name_prefix="reconcile"
        ) as pool:
            for candidate, (outcome, status) in zip(todo, pool.map(self._one, todo), strict=True):
                s = candidate.stuck
                if outcome is not Outcome.ERROR and not self.dry_run:
                    self.index.checked(candidate.partition, candidate.key, time.time())
                if outcome is Outcome.CHANGED:
                    tally.changes.append((s.sid, s.status, status or ""))
                CHECKED.labels(s.kind.value, outcome.value).inc()
                tally.add(outcome)
                if progress is not None:
                    progress(outcome)
        try:
            self.flush()
        except DeliveryFailed:
            # not published after all: due again at the next pass, not in an hour
            for candidate in todo:
                self.index.checked(candidate.partition, candidate.key, 0.0)
            raise
        return tally

    def discover(self, numbers: Iterable[str], since: float, tags: dict[str, str]) -> Tally:
        """Messages and calls sent from `numbers` since `since` that Switchboard never
        heard of: published as they stand at the provider."""
        from datetime import UTC, datetime

        tally = Tally()
        start = datetime.fromtimestamp(since, UTC)
        for number in sorted(set(numbers)):
            listings: list[tuple[CallbackKind, Iterable[Resource]]] = [
                (CallbackKind.SMS, self.provider.list_messages(number, start)),
                (CallbackKind.VOICE, self.provider.list_calls(number, start)),
            ]
            for kind, resources in listings:
                try:
                    for resource in resources:
                        sid = str(resource["sid"])
                        if self.index.is_known(kind, sid):
                            continue
                        status = str(resource.get("status"))
                        logger.info(
                            "reconcile discovered sid=%s status=%s from=%s", sid, status, number
                        )
                        if not self.dry_run:
                            self.publish(kind, resource, tags, since)
                        tally.changes.append((sid, None, status))
                        tally.add(Outcome.CHANGED)
                        CHECKED.labels(kind.value, "discovered").inc()
                except ProviderError as exc:
                    logger.error("reconcile: listing %s from %s: %s", kind.value, number, exc)
                    tally.add(Outcome.ERROR)
        self.flush()
        return tally

    def tombstone_stale_checks(self) -> int:
        stale = self.index.stale_checks()
        if self.dry_run:
            return 0
        checks = topic_name(Topic.RECONCILE_CHECKS, self.settings.topic_prefix)
        for partition, key in stale:
            self._produce(checks, key.encode(), None, partition)
            self.index.forget_check(partition, key)
        return len(stale)

    def flush(self) -> None:
        remaining = self.producer.flush(ACK_TIMEOUT_S)
        errors, self._errors = self._errors, []
        if remaining or errors:
            raise DeliveryFailed(
                f"{remaining} unacknowledged, {len(errors)} failed: {errors[:1]}",
                topic="reconcile outputs",
            )


def state_ends(settings: Settings, partitions: set[int]) -> dict[int, int]:
    """The state topic's end offset per partition (those with records only)."""
    name = topic_name(Topic.SID_STATE, settings.topic_prefix)
    consumer = Consumer(client_config(settings) | {"group.id": f"{group(settings)}-ends"})
    try:
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            if high > low:
                ends[p] = high
        return ends
    finally:
        consumer.close()


def recover(settings: Settings, index: StuckIndex, partitions: set[int] | None = None) -> None:
    """The index of `partitions` (all by default) from the two compacted topics."""

    def state(message: Message) -> None:
        index.apply_state(
            message.partition() or 0, (message.key() or b"").decode(), message.value()
        )

    def check(message: Message) -> None:
        index.apply_check(
            message.partition() or 0, (message.key() or b"").decode(), message.value()
        )

    read_to_end(settings, Topic.RECONCILE_CHECKS, check, partitions=partitions)
    read_to_end(settings, Topic.SID_STATE, state, partitions=partitions)
    if partitions is not None:
        for p in partitions:
            index.known.setdefault(p, set())


class ReconcileStrategy:
    """Follows its partitions of the state topic; a pass every `reconcile_interval_s`
    once it has caught up."""

    def __init__(
        self, settings: Settings, runtime: ConsumerRuntime, reconciler: Reconciler
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.reconciler = reconciler
        self.index = reconciler.index
        self._ends: dict[int, int] = {}  # the state topic's end at assignment, per partition
        self._fresh = False  # records came since the last poll
        self._assigned_at = time.monotonic()
        self._next_pass = 0.0
        self._stop_pass = reconciler.provider.stopped
        self._pass: threading.Thread | None = None
        self.passes = 0

    def on_assign(self, assigned: list[TopicPartition]) -> None:
        """Inside the rebalance: checks of the new partitions, and their state from the start."""
        numbers = {tp.partition for tp in assigned}
        self._end_pass()
        self.index.clear()
        if numbers:
            read_to_end(
                self.settings,
                Topic.RECONCILE_CHECKS,
                lambda m: self.index.apply_check(
                    m.partition() or 0, (m.key() or b"").decode(), m.value()
                ),
                partitions=numbers,
            )
        for p in numbers:
            self.index.known.setdefault(p, set())
        self._ends = state_ends(self.settings, numbers)
        self._assigned_at = time.monotonic()
        for tp in assigned:
            tp.offset = OFFSET_BEGINNING  # nothing is committed: the index is rebuilt

    def submit(self, records: list[Message], offsets: Offsets) -> None:
        for m in records:
            self.index.apply_state(m.partition() or 0, (m.key() or b"").decode(), m.value())
        if self._ends:
            for (_, partition), end in offsets.next.items():
                if end >= self._ends.get(partition, 0):
                    self._ends.pop(partition, None)
        self._fresh = True

    def poll(self) -> None:
        """A pass every interval, once the index holds what the state topic held when the
        partitions were assigned (a SID final by then is not fetched)."""
        fresh, self._fresh = self._fresh, False
        if not fresh and time.monotonic() - self._assigned_at > IDLE_CAUGHT_UP_S:
            # nothing read for a while: at the end, even if a compacted-away last record
            # keeps the offsets short of the end seen at assignment
            self._ends.clear()
        running = self._pass is not None and self._pass.is_alive()
        if self._ends or running or time.monotonic() < self._next_pass:
            return
        self._next_pass = time.monotonic() + self.settings.reconcile_interval_s
        STUCK.set(len(self.index))
        candidates = self.index.due(self.settings, time.time())
        self.reconciler.tombstone_stale_checks()
        if not candidates:
            self.passes += 1
            return
        self._stop_pass.clear()
        self._pass = threading.Thread(
            target=self._run, args=(candidates,), name="reconcile-pass", daemon=True
        )
        self._pass.start()

    def _run(self, candidates: list[Candidate]) -> None:
        started = time.monotonic()
        try:
            tally = self.reconciler.run(candidates)
        except Exception:
            logger.exception("reconcile pass failed; its SIDs are due again at the next pass")
            return
        finally:
            self.passes += 1
        logger.info(
            "reconcile pass: %d checked, %s in %.1f s",
            tally.checked,
            ", ".join(f"{n} {o.value}" for o, n in tally.counts.items()),
            time.monotonic() - started,
        )

    def _end_pass(self) -> None:
        if self._pass is not None:
            self._stop_pass.set()
            self._pass.join()
            self._pass = None

    def revoke(self, settle: bool) -> None:
        self._end_pass()
        self.index.clear()

    def close(self) -> None:
        self._end_pass()


def reconcile_consumer(settings: Settings) -> ConsumerRuntime:
    provider = Provider(settings)
    producer = Producer(producer_config(settings))
    reconciler = Reconciler(settings, provider, producer, StuckIndex())
    holder: list[ReconcileStrategy] = []

    def strategy(runtime: ConsumerRuntime) -> ReconcileStrategy:
        holder.append(ReconcileStrategy(settings, runtime, reconciler))
        return holder[0]

    return ConsumerRuntime(
        settings,
        name="reconcile",
        group=group(settings),
        topics=[topic_name(Topic.SID_STATE, settings.topic_prefix)],
        strategy=strategy,
        batch_size=10_000,
        batch_wait_s=0.5,
        on_assign=lambda assigned: holder[0].on_assign(assigned),
        config={
            "partition.assignment.strategy": "range",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        },
    )
