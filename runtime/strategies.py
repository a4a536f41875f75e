"""The strategies the stages stand on: one record at a time, or batches written whole.

`PerRecord` acts on each record and commits it before the next: for effects with an
idempotency key that must not wait behind a batch (an SMS per forward or alert).
`Batching` fills a batch by size and age, writes it on a helper thread while the next
fills, and commits a batch's offsets once its write returned: the ClickHouse writers
and failure enrichment (whose write is bounded concurrent REST calls, then an insert).
The intake has its own (`processors/intake.py`): publish, then its state, then commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from confluent_kafka import Message
from prometheus_client import Counter

from contract.settings import Settings
from runtime import faults
from runtime.consumer import ConsumerRuntime, Offsets, next_offsets

logger = logging.getLogger(__name__)

T = TypeVar("T")

POISON = Counter(
    "switchboard_consumer_poison_total",
    "Records whose handling kept raising, dead-lettered and acknowledged",
    ["consumer"],
)

# Waits on a helper thread shorter than this do not pause the consumer: a pause drops
# what librdkafka has prefetched and the resume fetches it again.
_UNPAUSED_WAIT_S = 5.0


def describe(msg: Message) -> str:
    return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"


# --- one record at a time ---


class Wait(Protocol):
    """Back off; False when the work must be given up. `through_revocation`: only a stop
    gives it up (see `ConsumerRuntime.wait`)."""

    def __call__(self, seconds: float, /, *, through_revocation: bool = False) -> bool: ...


# Acts on one record; False when it gave up (interrupted): the record is read again.
Handler = Callable[[Message, Wait], bool]
# Takes a record whose handling kept raising out of the stream (a dead-letter topic);
# False if it could not (stopping): the record is read again.
DeadLetter = Callable[[Message, str, Wait], bool]


class PerRecord:
    def __init__(
        self, runtime: ConsumerRuntime, handler: Handler, dead_letter: DeadLetter, *, attempts: int
    ) -> None:
        self.runtime = runtime
        self.handler = handler
        self.dead_letter = dead_letter
        self.attempts = attempts

    def submit(self, records: list[Message], offsets: Offsets) -> None:
        runtime = self.runtime
        for i, msg in enumerate(records):
            if runtime.stopping or not self._handle(msg):
                logger.info(
                    "%s: left %s and %d after it unacknowledged; they will be read again",
                    runtime.name,
                    describe(msg),
                    len(records) - i - 1,
                )
                runtime.rewind(records[i:])
                return
            faults.reach(f"{runtime.name}:after-handle")
            runtime.commit(Offsets(next_offsets([msg]), offsets.generation))

    def _handle(self, msg: Message) -> bool:
        """The handler's verdict. A handler that raises is tried again after a backoff,
        `attempts` times in all; then the record is dead-lettered, so that one record
        that cannot be handled does not hold up its partition for ever."""
        wait = self.runtime.wait
        backoff = 1.0
        for attempt in range(1, self.attempts + 1):
            try:
                return self.handler(msg, wait)
            except Exception as exc:
                logger.exception(
                    "%s: handling %s failed (try %d of %d)",
                    self.runtime.name,
                    describe(msg),
                    attempt,
                    self.attempts,
                )
                reason = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts and not wait(backoff):
                return False
            backoff = min(backoff * 2, 60.0)
        POISON.labels(self.runtime.name).inc()
        logger.error("%s: dead-lettering %s: %s", self.runtime.name, describe(msg), reason)
        return self.dead_letter(msg, reason, wait)

    def poll(self) -> None:
        pass

    def revoke(self, settle: bool) -> None:
        pass  # every record is committed before the next is taken

    def close(self) -> None:
        pass


def per_record(
    settings: Settings,
    *,
    name: str,
    group: str,
    topic: str,
    handler: Handler,
    dead_letter: DeadLetter,
    config: Mapping[str, Any],
) -> ConsumerRuntime:
    return ConsumerRuntime(
        settings,
        name=name,
        group=group,
        topics=[topic],
        batch_size=100,
        batch_wait_s=0.2,
        config=config,
        strategy=lambda runtime: PerRecord(
            runtime, handler, dead_letter, attempts=settings.record_max_attempts
        ),
    )


def until_done(
    what: str,
    attempt: Callable[[], T],
    *,
    wait: Callable[[float], bool],
    retry_base_s: float,
    retry_max_s: float,
) -> T | None:
    """`attempt()` until it returns, for a step a record cannot be acknowledged without
    (ClickHouse or Kafka down): each error is logged with `what`, then waited out with
    exponential backoff. None if `wait` gives up first (stopping, or the partition was
    revoked): the caller then leaves its record unacknowledged, to be read again."""
    backoff = retry_base_s
    while True:
        try:
            return attempt()
        except Exception as exc:  # noqa: BLE001 - retried until it works or we stop
            logger.error("%s failed (%s); retrying in %.1f s", what, exc, backoff)
            if not wait(backoff):
                return None
            backoff = min(backoff * 2, retry_max_s)


# --- batches ---

B = TypeVar("B")


class Abandoned(Exception):
    """A write gave up because the runtime interrupted it (stop or revocation)."""


class BatchSink(Protocol[B]):
    """What `Batching` writes. `write` runs on a helper thread and must be idempotent:
    a batch whose write raised is written again, and a crash before the commit writes
    it again after the restart. It may remove what it wrote from the batch, so a retry
    writes only the rest. Long waits inside it (retries) use `runtime.sleep`."""

    def new(self) -> B: ...

    def add(self, batch: B, records: list[Message]) -> int:
        """Add records (skipping, with a log line, those that cannot be read); the
        number of rows added."""
        ...

    def write(self, batch: B) -> None: ...

    def close(self) -> None:
        """The runtime stopped: release what the sink holds (its threads)."""
        ...


@dataclass(slots=True)
class _Pending(Generic[B]):
    batch: B
    rows: int = 0
    offsets: Offsets = field(default_factory=Offsets)
    written: Future[None] | None = None


class Batching(Generic[B]):
    """Batches that close at `max_rows`, at `age_s` after their first record, or (with
    `close_early`) as soon as the consumer has caught up, but no sooner than
    `early_gap_s` after the previous one, so that a trickle is not a write per record."""

    def __init__(
        self,
        runtime: ConsumerRuntime,
        sink: BatchSink[B],
        *,
        max_rows: int,
        age_s: float,
        close_early: bool = True,
        early_gap_s: float = 0.2,
        retry_max_s: float = 30.0,
    ) -> None:
        self.runtime = runtime
        self.sink = sink
        self.max_rows = max_rows
        self.age_s = age_s
        self.close_early = close_early
        self.early_gap_s = early_gap_s
        self.retry_max_s = retry_max_s
        self._filling = _Pending(sink.new())
        self._writing: _Pending[B] | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"{runtime.name}-write")
        self._deadline = 0.0
        self._closed_at = 0.0
        self._fresh = False  # records arrived since the last poll

    def submit(self, records: list[Message], offsets: Offsets) -> None:
        filling = self._filling
        if not filling.offsets:
            self._deadline = time.monotonic() + self.age_s
        filling.rows += self.sink.add(filling.batch, records)
        filling.offsets = filling.offsets.merge(offsets)
        self._fresh = True

    def poll(self) -> None:
        fresh, self._fresh = self._fresh, False
        filling, now = self._filling, time.monotonic()
        if filling.offsets:
            caught_up = self.close_early and not fresh and now - self._closed_at >= self.early_gap_s
            if filling.rows >= self.max_rows or caught_up or now >= self._deadline:
                # the batch before first, so that commits stay in order
                if self._settle(interruptible=True):
                    self._start()
                    self._closed_at = now
                return
        writing = self._writing
        if writing is not None and writing.written is not None and writing.written.done():
            self._settle(interruptible=True)  # commit as soon as written

    def revoke(self, settle: bool) -> None:
        """settle: write what is held, one try each, and commit; then (or at once) drop."""
        if settle and (self._writing is not None or self._filling.rows):
            logger.info(
                "%s: partitions revoked, writing %d held rows first",
                self.runtime.name,
                self._filling.rows + (self._writing.rows if self._writing else 0),
            )
            if self._settle(interruptible=False) and self._filling.offsets:
                self._start()
                self._settle(interruptible=False)
        self._drop()

    def close(self) -> None:
        """At a stop: write and commit what we hold (one try each), so that nothing is
        read twice needlessly; during an outage it is dropped, to be read again."""
        if self._settle(interruptible=False) and self._filling.offsets:
            self._start()
            self._settle(interruptible=False)
        self._drop()
        self._writer.shutdown()
        self.sink.close()

    def _start(self) -> None:
        pending, self._filling = self._filling, _Pending(self.sink.new())
        pending.written = self._writer.submit(self.sink.write, pending.batch)
        self._writing = pending

    def _settle(self, *, interruptible: bool) -> bool:
        """Wait for the batch being written, write it again while that fails (backing
        off, paused), then commit its offsets. False if given up: interrupted, or (not
        `interruptible`: revoking or stopping) after one failed try."""
        pending = self._writing
        if pending is None:
            return True
        backoff = 0.2
        while True:
            written = pending.written
            assert written is not None
            if not self._finished(written, interruptible):
                return self._give_up(pending)
            try:
                written.result()
                break
            except Abandoned:
                return self._give_up(pending)
            except Exception as exc:  # noqa: BLE001 - written again until it works
                logger.error(
                    "%s: write of %d rows failed (%s); retrying in %.1f s",
                    self.runtime.name,
                    pending.rows,
                    exc,
                    backoff,
                )
                if not interruptible or not self.runtime.wait(backoff):
                    return self._give_up(pending)
                backoff = min(backoff * 2, self.retry_max_s)
                pending.written = self._writer.submit(self.sink.write, pending.batch)
        faults.reach(f"{self.runtime.name}:after-write")
        self._writing = None
        self.runtime.commit(pending.offsets)
        return True

    def _finished(self, written: Future[None], interruptible: bool) -> bool:
        """Whether the write finished. Waited for unpaused at first; a longer wait (a
        slow store or API) pauses the consumer and polls it, in slices that end as
        soon as the write does, to stay in the group. Not `interruptible`: waited for
        outright (the write itself gives up once the runtime is interrupted)."""
        if not interruptible or not wait_for([written], timeout=_UNPAUSED_WAIT_S).not_done:
            wait_for([written])
            return True
        while not written.done():
            if not self.runtime.wait(_UNPAUSED_WAIT_S, until=written.done):
                return False
        return True

    def _give_up(self, pending: _Pending[B]) -> bool:
        logger.warning(
            "%s: giving up %d rows unwritten and uncommitted; they will be read again",
            self.runtime.name,
            pending.rows + self._filling.rows,
        )
        self._drop()
        return False

    def _drop(self) -> None:
        """Forget what is held, uncommitted. A write still running (its store slow) is
        waited for, so that no write of an old assignment overlaps a new one."""
        if self._writing is not None and self._writing.written is not None:
            wait_for([self._writing.written])
        self._writing = None
        self._filling = _Pending(self.sink.new())
