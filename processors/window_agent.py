"""The window agent (faust): scope windows from the intake's increments; alerts; metrics.

It reads `processors.transitions`, where each scope's increments arrive on the
partition that its window state (a faust table keyed by family|scope) lives on.
Per record and scope: apply the increments (skipping offsets applied before),
evaluate the alert rules on the windows that changed, publish new alerts and wait
for their acknowledgement, then write the state, in which the raised alert ids
live. A replayed record therefore neither counts twice nor raises twice. The one
gap, a crash between an alert's acknowledgement and the state write, is closed at
start-up: the worker reads the recent alert ids off the alerts topic (`published`).

Window figures are published on the tick records that every worker sends to its
own partitions every `metrics_interval_s`: the state's `unpublished` buckets (and
those whose pending messages have since become unconfirmed) are published, then
the state is written, so figures survive a crash unpublished but never lost.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import faust

from contract.settings import Settings
from processors import metrics
from processors.alerting import Rules, evaluate
from processors.app import Topics
from processors.state import Family
from processors.transitions import TransitionBatch, scope_partition, split_key
from processors.windows import Entry, ScopeWindows, WindowPlan, window_records

logger = logging.getLogger(__name__)


def register(app: faust.App, topics: Topics, settings: Settings, published: set[str]) -> None:
    plan = WindowPlan.from_settings(settings)
    rules = Rules.from_settings(settings)
    partitions = settings.topic_partitions
    transitions_topic = topics.transitions.get_topic_name()
    table = app.Table(
        "scope-windows",
        default=None,
        key_type=bytes,  # bytes: faust's raw serializer; values are ScopeWindows.to_bytes()
        value_type=bytes,
        partitions=partitions,
    )
    # key -> wall-clock time from which its windows want publishing (0: changed already)
    attention: dict[bytes, float] = {}

    def watch(key: bytes, windows: ScopeWindows) -> None:
        due = windows.next_due(plan)
        when = 0.0 if windows.unpublished else due if due is not None else math.inf
        if when == math.inf:
            attention.pop(key, None)
        else:
            attention[key] = when

    async def apply(key: str, sources: dict[str, list[Entry]], now: float) -> None:
        family, scope = split_key(key)
        stored = table.get(key.encode())
        windows = ScopeWindows.from_bytes(stored) if stored is not None else ScopeWindows(family)
        applied = windows.apply(sources, plan, now)
        if applied.duplicates:
            metrics.WINDOW_ITEMS_SKIPPED.labels("replayed").inc(applied.duplicates)
        if applied.late:
            metrics.WINDOW_ITEMS_SKIPPED.labels("expired").inc(applied.late)
            logger.warning(
                "%d increments for %s arrived after their window expired", applied.late, key
            )
        if not applied.advanced:
            return
        for alert in evaluate(scope, windows, applied.changed, plan, rules, now):
            if alert.alert_id in published:
                logger.info("alert %s is on the alerts topic already; not again", alert.alert_id)
                continue
            sent = await topics.alerts.send(key=alert.alert_id.encode(), value=alert.to_bytes())
            await sent  # acknowledged before the state that records it is written
            published.add(alert.alert_id)
            metrics.ALERTS.labels(alert.type.value).inc()
            logger.warning(
                "alert %s %s scope=%s window=%.0f+%ds count=%d value=%.2f threshold=%.2f",
                alert.alert_id,
                alert.type,
                alert.scope,
                alert.window_start,
                alert.window_end - alert.window_start,
                alert.count,
                alert.value,
                alert.threshold,
            )
        table[key.encode()] = windows.to_bytes()
        watch(key.encode(), windows)

    async def publish(partition: int, now: float) -> None:
        ready = [
            key
            for key, when in attention.items()
            if when <= now and scope_partition(key.decode(), partitions) == partition
        ]
        sends: list[Any] = []
        updated: dict[bytes, ScopeWindows] = {}
        for key in ready:
            stored = table.get(key)
            if stored is None:
                attention.pop(key, None)
                continue
            windows = ScopeWindows.from_bytes(stored)
            buckets = windows.unpublished | windows.due_between(windows.due_published, now, plan)
            family, scope = split_key(key.decode())
            target = topics.metrics_delivery if family is Family.DELIVERY else topics.metrics_calls
            records = window_records(scope, windows, buckets, plan, now)
            sends.extend(
                [await target.send(key=scope.encode(), value=r.to_bytes()) for r in records]
            )
            metrics.WINDOWS_PUBLISHED.labels(family.value).inc(len(records))
            windows.unpublished.clear()
            windows.due_published = now
            updated[key] = windows
        await asyncio.gather(*sends)  # published before the state says so
        metrics.WINDOW_SCOPES.set(len(table))
        for key, windows in updated.items():
            table[key] = windows.to_bytes()
            watch(key, windows)
        if updated:
            logger.info(
                "published %d window records of %d scopes (partition %d)",
                len(sends),
                len(updated),
                partition,
            )

    async def windows_agent(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                batch = TransitionBatch.from_bytes(event.value)
            except (ValueError, KeyError, TypeError) as exc:  # orjson's errors are ValueErrors
                message = event.message
                logger.error(
                    "skipped an unreadable transitions record %s[%d]@%d: %s",
                    message.topic,
                    message.partition,
                    message.offset,
                    exc,
                )
                continue
            now = time.time()
            if batch.tick is not None:
                await publish(event.message.partition, now)
                continue
            for key, sources in batch.scopes.items():
                await apply(key, sources, now)

    app.agent(topics.transitions, name="windows", concurrency=1)(windows_agent)

    async def rebuild_attention() -> None:
        # After a restart or rebalance: what the recovered states still owe publishing.
        attention.clear()
        for key, stored in table.items():
            watch(key, ScopeWindows.from_bytes(stored))

    table.on_recover(rebuild_attention)

    async def tick() -> None:
        tick = TransitionBatch(tick=time.time()).to_bytes()
        for tp in app.assignor.assigned_actives():
            if tp.topic == transitions_topic:
                await topics.transitions.send(value=tick, partition=tp.partition)

    app.timer(settings.metrics_interval_s, name="window-ticks")(tick)
