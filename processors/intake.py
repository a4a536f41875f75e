"""The intake: raw callbacks to events, per-SID state, window increments and forwards.

It runs in a thread of the processors worker, a strategy on the consumer runtime
(`runtime/consumer.py`, librdkafka through confluent-kafka), not as a faust agent:
faust spends about 100 µs of CPU on its own plumbing per record, even for a no-op
agent reading with `take_events()` (bench/process.py measures it as the baseline),
which alone is more than the 10,000 callbacks/s target allows. librdkafka fetches and
produces in its own threads and hands over whole batches.

Processing guarantee: at least once, with outputs that are safe to repeat. A batch:
1. publishes events, dead letters, window increments and forward requests, and waits
   for their acknowledgement;
2. then publishes its status-change records (the per-SID state changelog) and waits;
3. then commits its raw offsets.
Batches overlap rather than wait: while a batch's acknowledgements come in, the next
ones are read and processed (up to MAX_IN_FLIGHT); steps 2 and 3 still follow each
batch's own acknowledgements, in batch order, so a SID's state changes reach the
changelog in the order they happened and offsets are committed in order.
A crash before 3 replays the batch. Callbacks whose state change survived are
duplicates now and count nothing; increments sent again carry the same raw offsets
and the window agent skips them; events and forwards repeat, and their consumers
de-duplicate them (ClickHouse by key, the dispatcher by forward_id). Because step 1
is acknowledged before step 2 starts, a state change never survives without its
increments: that would lose them for good.

Partition p of every raw topic is one unit (the range assignor gives a consumer the
same partition numbers of every topic), and so is partition p of the state topic:
the voice and inbound-call callbacks of one CallSid share state.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer, TopicPartition

from contract.errors import DeliveryFailed, ServiceUnavailable
from contract.kafka import admin, producer_config
from contract.kinds import SPECS, CallbackKind
from contract.settings import Settings
from contract.topics import Topic, topic_name
from processors import metrics
from processors.batch import BatchOutput, Raw, process_batch
from processors.replay import read_to_end
from processors.sidstore import SidStore
from processors.state import SidState, state_from_record
from processors.windows import WindowPlan
from runtime.consumer import ConsumerRuntime, Offsets
from runtime.deadletters import DEAD_LETTERS

logger = logging.getLogger(__name__)

SWEEP_EVERY_S = 60.0
ACK_TIMEOUT_S = 60.0  # beyond the producer's message.timeout.ms: every message is decided
MAX_IN_FLIGHT = 3  # batches read ahead of the oldest unacknowledged one


def intake_group(settings: Settings) -> str:
    """The consumer group of the raw topics (faust's own group reads the transitions)."""
    return f"{settings.topic_prefix}switchboard-intake"


@dataclass(slots=True)
class _InFlight:
    """A batch on its way: outputs acknowledged, then its state changes, then its offsets."""

    state: list[tuple[int, bytes, bytes]]
    offsets: Offsets
    unacked: int = 0  # records of the current step not acknowledged yet
    state_sent: bool = False
    error: KafkaError | None = None

    def acked(self, error: KafkaError | None, message: Message) -> None:
        self.unacked -= 1
        if error is not None and self.error is None:
            self.error = error
            logger.error("delivery to %s failed key=%s: %s", message.topic(), message.key(), error)

    @property
    def done(self) -> bool:
        return self.state_sent and not self.unacked


def intake_consumer(settings: Settings) -> ConsumerRuntime:
    """The intake on the consumer runtime: the raw topics, in batches."""
    transitions = topic_name(Topic.TRANSITIONS, settings.topic_prefix)
    found = admin(settings).list_topics(transitions, timeout=10).topics.get(transitions)
    if found is None or not found.partitions:
        raise ServiceUnavailable(f"topic {transitions} has no partitions; is it created?")
    producer = Producer(producer_config(settings))
    intake: Intake | None = None

    def strategy(runtime: ConsumerRuntime) -> Intake:
        nonlocal intake
        intake = Intake(settings, runtime, producer, len(found.partitions))
        return intake

    def on_assign(assigned: list[TopicPartition]) -> None:
        assert intake is not None
        intake.assign(assigned)

    return ConsumerRuntime(
        settings,
        name="intake",
        group=intake_group(settings),
        topics=[topic_name(spec.raw_topic, settings.topic_prefix) for spec in SPECS.values()],
        strategy=strategy,
        batch_size=settings.process_batch_max,
        batch_wait_s=settings.process_batch_wait_s,
        on_assign=on_assign,
        config={
            "partition.assignment.strategy": "range",
            # Wait up to 20 ms for 64 KiB rather than fetch whatever one produce
            # brought: at campaign rates the edge's small produce requests each
            # answered a fetch (about 430 fetches/s at 2,700 callbacks/s), and the
            # broker's CPU went to requests, not bytes. Same-session A/B of
            # bench/pipeline's steady part: 3,000 -> 3,670 callbacks/s sustained at
            # 50 ms; but 50 ms also put the alert p99 over 2 s (2,303 and 2,142 ms
            # against 1,580 before). 20 ms kept the gain (4,779/s) with the alert p99
            # at 1,774 ms.
            "fetch.min.bytes": 64 * 1024,
            "fetch.wait.max.ms": 20,
            "enable.auto.offset.store": False,
            "session.timeout.ms": int(settings.process_session_timeout_s * 1000),
            "heartbeat.interval.ms": int(settings.process_session_timeout_s * 250),
        },
    )


class Intake:
    """The intake's strategy: process a batch, publish, then its state, then commit."""

    def __init__(
        self, settings: Settings, runtime: ConsumerRuntime, producer: Producer, partitions: int
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.producer = producer
        self.partitions = partitions  # of the transitions topic
        self.kinds: dict[str, CallbackKind] = {
            topic_name(spec.raw_topic, settings.topic_prefix): kind for kind, spec in SPECS.items()
        }
        self.store = SidStore()
        self.plan = WindowPlan.from_settings(settings)
        self._held: set[int] = set()  # partition numbers held until the current rebalance
        self._last_sweep = time.monotonic()
        self._in_flight: deque[_InFlight] = deque()

    def _name(self, topic: Topic) -> str:
        return topic_name(topic, self.settings.topic_prefix)

    # --- the strategy ---

    def submit(self, records: list[Message], offsets: Offsets) -> None:
        started = time.perf_counter()
        raws: list[Raw] = []
        kinds: Counter[str] = Counter()
        topic_kinds = self.kinds
        for message in records:
            kind = topic_kinds[message.topic() or ""]
            kinds[kind] += 1
            partition, offset = message.partition() or 0, message.offset() or 0
            raws.append(Raw(kind, partition, offset, message.value() or b""))
        out = process_batch(raws, self.store, self.settings, self.plan, self.partitions)
        processed = time.perf_counter()
        batch = _InFlight(out.state, offsets)
        self._publish_outputs(out, batch)
        self._in_flight.append(batch)
        self._settle_to(MAX_IN_FLIGHT)  # read no further ahead than this
        self._count(out, kinds, processed - started, time.perf_counter() - processed)

    def poll(self) -> None:
        self._advance()
        if time.monotonic() - self._last_sweep > SWEEP_EVERY_S:
            self._sweep()

    def revoke(self, settle: bool) -> None:
        if settle:
            self._drain()  # the batches in hand are ours to commit until the revocation completes
            self._held = set(self.store.partitions)
            return
        self._in_flight.clear()  # no longer ours to commit: the new owner replays them
        self._held = set()
        self.store.keep_only(())

    def close(self) -> None:
        try:
            self._drain()
        finally:
            remaining = self.producer.flush(ACK_TIMEOUT_S)
            logger.info("intake: %d records unflushed at the stop", remaining)

    def assign(self, assigned: list[TopicPartition]) -> None:
        """Called inside the rebalance, before any record of the new assignment."""
        numbers = {tp.partition for tp in assigned}
        # Partitions held until this very rebalance are current in memory; others are not.
        kept = self._held & numbers
        self.store.keep_only(kept)
        fresh = numbers - kept
        if fresh:
            started = time.monotonic()
            for partition, states in recover_states(self.settings, fresh).items():
                self.store.load(partition, states)
            logger.info(
                "intake recovered %d per-SID states of partitions %s in %.1f s",
                len(self.store),
                sorted(fresh),
                time.monotonic() - started,
            )
        self._held = numbers

    # --- steps 2 and 3 ---

    def _advance(self, wait: bool = False) -> None:
        """Steps 2 and 3 for every batch, oldest first, as far as acknowledgements allow."""
        self.producer.poll(0)
        for batch in self._in_flight:
            if batch.error is not None:
                # nothing of it is committed: the batch is processed again after the restart
                raise DeliveryFailed(str(batch.error), topic="intake outputs")
            if batch.unacked:
                break  # later batches' state changes must not overtake this one's
            if not batch.state_sent:
                self._publish_state(batch)
                if not batch.done:
                    break
        done = Offsets()
        while self._in_flight and self._in_flight[0].done:
            done = done.merge(self._in_flight.popleft().offsets)
        # A commit refused (a rebalance took the partitions): the new owner replays the
        # batch, harmlessly.
        self.runtime.commit(done, asynchronous=not wait)

    def _drain(self) -> None:
        """Settle every batch in hand: before a rebalance takes partitions, and at a stop."""
        self._settle_to(0, wait=True)

    def _settle_to(self, most: int, *, wait: bool = False) -> None:
        """Advance until at most `most` batches are in hand, within ACK_TIMEOUT_S."""
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while len(self._in_flight) > most:
            if time.monotonic() > deadline:
                raise DeliveryFailed("unacknowledged for too long", topic="intake outputs")
            self.producer.poll(0.01)
            self._advance(wait=wait)

    def _publish_state(self, batch: _InFlight) -> None:
        batch.state_sent = True
        batch.unacked += len(batch.state)  # before producing: a poll may acknowledge at once
        state_topic = self._name(Topic.SID_STATE)
        for partition, key, value in batch.state:
            self._produce(state_topic, key, value, partition, batch.acked)

    def _publish_outputs(self, out: BatchOutput, batch: _InFlight) -> None:
        batch.unacked += (  # before producing: a poll may acknowledge at once
            len(out.events) + len(out.dead_letters) + len(out.transitions) + len(out.forwards)
        )
        acked = batch.acked
        events = self._name(Topic.EVENTS)
        for partition, key, value in out.events:
            self._produce(events, key, value, partition, acked)
        dead_letter = self._name(Topic.CALLBACKS_DEAD_LETTER)
        for letter in out.dead_letters:
            self._produce(dead_letter, letter.letter_id.encode(), letter.to_bytes(), None, acked)
        transitions = self._name(Topic.TRANSITIONS)
        for partition, record in out.transitions.items():
            self._produce(transitions, None, record.to_bytes(), partition, acked)
        forwards = self._name(Topic.FORWARDS)
        for forward in out.forwards:
            logger.info(
                "forward %s sid=%s call_sid=%s", forward.kind, forward.forward_id, forward.call_sid
            )
            self._produce(forwards, forward.forward_id.encode(), forward.to_bytes(), None, acked)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        acked: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        args: dict[str, Any] = {"key": key, "value": value}
        if partition is not None:
            args["partition"] = partition
        if acked is not None:
            args["on_delivery"] = acked
        while True:
            try:
                self.producer.produce(topic, **args)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.05)

    def _count(
        self, out: BatchOutput, kinds: Counter[str], processing: float, publishing: float
    ) -> None:
        for kind, n in kinds.items():
            metrics.EVENTS.labels(kind).inc(n)
        metrics.TRANSITIONS.inc(out.changes)
        metrics.UNCHANGED.inc(out.unchanged)
        for letter in out.dead_letters:
            DEAD_LETTERS.labels(letter.stage, letter.reason).inc()
        metrics.BATCH_SECONDS.observe(processing + publishing)
        logger.info(
            "intake batch: %d callbacks, %d transitions, %d unchanged, %d dead-lettered, "
            "%d forwards; processed in %.0f ms, published and acknowledged in %.0f ms",
            sum(kinds.values()),
            out.changes,
            out.unchanged,
            len(out.dead_letters),
            len(out.forwards),
            processing * 1000,
            publishing * 1000,
        )

    def _sweep(self) -> None:
        self._last_sweep = time.monotonic()
        now = time.time()
        forgotten, final_kept = self.store.expire(
            now - self.settings.state_ttl_s, now - self.settings.final_state_ttl_s
        )
        metrics.SID_STATES.labels("yes").set(final_kept)
        metrics.SID_STATES.labels("no").set(len(self.store) - final_kept)
        state_topic = self._name(Topic.SID_STATE)
        for partition, key in forgotten:
            self._produce(state_topic, key.encode(), None, partition)
        if forgotten:
            logger.info(
                "forgot %d per-SID states (final ones after %d s, others after %d s)",
                len(forgotten),
                self.settings.final_state_ttl_s,
                self.settings.state_ttl_s,
            )


def recover_states(settings: Settings, partitions: set[int]) -> dict[int, dict[str, SidState]]:
    """Per-SID states from the compacted state topic: its latest record per key."""
    states: dict[int, dict[str, SidState]] = {p: {} for p in partitions}

    def apply(message: Message) -> None:
        key = (message.key() or b"").decode()
        value = message.value()
        of_partition = states[message.partition() or 0]
        if value is None:
            of_partition.pop(key, None)  # forgotten (SidStore.expire)
        else:
            of_partition[key] = state_from_record(value)

    read_to_end(settings, Topic.SID_STATE, apply, partitions=partitions)
    return states
