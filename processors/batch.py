"""One intake batch: raw callbacks in, everything the intake must publish out. Pure.

Every callback that can be read becomes an event for the `events` topic (duplicates
too: ClickHouse de-duplicates them), on the partition it came from, so one SID's
events stay in order; it is redacted as `contract.privacy` says (no texts, numbers
hashed when set), while state, windows and forwards read the callback as it came.
A callback that cannot be taken (no SID, no status, an unreadable
envelope) becomes a dead letter holding the raw record; one with an unreadable typed value
is an event like the others, that value NULL (see `contract.normalize`).
Callbacks that change their SID's state become a status-change record, window
increments for their scopes, and (recordings, transcriptions) forward requests.
The store is updated in memory as the batch goes, so a later callback of the same
SID in the batch sees the earlier one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from contract.deadletters import DeadLetter, Stage
from contract.errors import BadCallback
from contract.forwards import ForwardRequest
from contract.kinds import CallbackKind
from contract.privacy import Redactor
from contract.settings import Settings
from processors import normalizer
from processors.forwarding import forward_request
from processors.sidstore import SidStore
from processors.state import FAMILY, scopes, state_key, step
from processors.transitions import TransitionBatch, scope_partition, table_key
from processors.windows import WindowPlan

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Raw:
    kind: CallbackKind
    partition: int
    offset: int
    value: bytes


@dataclass(slots=True)
class BatchOutput:
    events: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # partition, key, value
    dead_letters: list[DeadLetter] = field(default_factory=list)
    transitions: dict[int, TransitionBatch] = field(default_factory=dict)  # by target partition
    forwards: list[ForwardRequest] = field(default_factory=list)
    state: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # partition, key, record
    changes: int = 0
    unchanged: int = 0  # duplicates and late lower statuses


def process_batch(
    raws: Iterable[Raw], store: SidStore, settings: Settings, plan: WindowPlan, partitions: int
) -> BatchOutput:
    """`partitions`: of the transitions topic, which the scopes are spread over."""
    out = BatchOutput()
    # what ClickHouse may keep; state, windows and forwards read the event itself
    redactor = Redactor.from_settings(settings)
    bucket = plan.bucket
    debug = logger.isEnabledFor(logging.DEBUG)
    for raw in raws:
        try:
            event = normalizer.read(raw.kind, raw.value)
        except BadCallback as exc:
            logger.warning(
                "dead-lettered %s callback sid=%s partition=%d offset=%d: %s (%s)",
                raw.kind,
                exc.sid or "-",
                raw.partition,
                raw.offset,
                exc.reason,
                exc.code,
            )
            out.dead_letters.append(
                DeadLetter.of(
                    raw.value,
                    reason=exc.code,
                    message=exc.reason,
                    stage=Stage.INTAKE,
                    topic=raw.kind.spec.raw_topic,
                    partition=raw.partition,
                    offset=raw.offset,
                    key=exc.sid,  # the edge keys a callback by its SID
                    sid=exc.sid,
                    at=time.time(),
                )
            )
            continue
        published = event.to_bytes() if redactor is None else redactor.event_bytes(event)
        out.events.append((raw.partition, event.sid.encode(), published))
        sid_key = state_key(event.kind, event.sid)
        transition = step(store.get(raw.partition, sid_key), event)
        if transition is None:
            out.unchanged += 1
            if debug:
                logger.debug("unchanged %s sid=%s status=%s", raw.kind, event.sid, event.status)
            continue
        out.changes += 1
        if debug:
            logger.debug(
                "transition %s sid=%s %s -> %s",
                raw.kind,
                event.sid,
                transition.previous,
                transition.status,
            )
        store.put(raw.partition, sid_key, transition.state)
        out.state.append((raw.partition, sid_key.encode(), transition.record()))
        family = FAMILY.get(event.kind)
        if family is not None and transition.counts:
            source = f"{raw.kind.value}/{raw.partition}"
            keys = [table_key(family, scope) for scope in scopes(event)]
            for count in transition.counts:
                at, deltas = count.at, count.deltas
                counted = bucket(at)
                same = tuple(deltas.items())
                for key in keys:
                    target = scope_partition(key, partitions)
                    batch = out.transitions.get(target)
                    if batch is None:
                        batch = out.transitions[target] = TransitionBatch()
                    batch.add(key, source, counted, at, deltas, raw.offset, same)
        forward = forward_request(transition, event, settings)
        if forward is not None:
            out.forwards.append(forward)
    return out
