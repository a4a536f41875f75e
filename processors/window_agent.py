"""The window agent (faust): scope windows from the intake's increments; alerts; metrics.

It reads `processors.transitions`, where each scope's increments arrive on the
partition that its window state (a faust table keyed by family|scope) lives on.
Per record and scope: apply the increments (skipping offsets applied before),
judge the alert rules at the scope's latest event time (`processors.alerting`),
publish the notifications due and wait for their acknowledgement, then write the
state, in which what is firing lives. A replayed record therefore neither counts
twice nor notifies twice. The one gap, a crash between an alert's acknowledgement
and the state write, is closed at start-up: the worker reads the recent alert ids
off the alerts topic (`published`). A scope that goes quiet while an alert fires is
judged again on the ticks, at the wall clock, once no increment has arrived for a
whole alert window, so its alert resolves. An alert that a silence covers is
published marked `silenced`.

Window figures are published on the tick records that every worker sends to its
own partitions every `metrics_interval_s`: the state's `unpublished` buckets (and
those whose pending messages have since become unconfirmed) are published, then
the state is written, so figures survive a crash unpublished but never lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from typing import Any

import faust

from contract.alerts import Alert
from contract.kafka import min_insync_config
from contract.privacy import masked_scope
from contract.settings import Settings
from contract.silences import Silences
from processors import metrics
from processors.alerting import Rules, evaluate
from processors.app import Topics
from processors.state import Family
from processors.transitions import TransitionBatch, scope_partition, split_key
from processors.windows import Entry, ScopeWindows, WindowPlan, window_records

logger = logging.getLogger(__name__)


class WindowAgent:
    """One worker's window agent: its table of scope windows, the scopes that want
    publishing, and a method per step (`register` hands them to faust)."""

    def __init__(
        self,
        app: faust.App,
        topics: Topics,
        settings: Settings,
        published: set[str],
        silences: Silences,
    ) -> None:
        self.app = app
        self.topics = topics
        self.published = published  # ids of alerts known to be on the alerts topic
        self.silences = silences
        self.plan = WindowPlan.from_settings(settings)
        self.rules = Rules.from_settings(settings)
        self.partitions = settings.topic_partitions
        self.table = app.Table(
            "scope-windows",
            default=None,
            key_type=bytes,  # bytes: faust's raw serializer; values are ScopeWindows.to_bytes()
            value_type=bytes,
            partitions=self.partitions,
            extra_topic_configs=min_insync_config(settings),  # its changelog, made by faust
        )
        # key -> wall-clock time from which its windows want publishing (0: changed already)
        self.attention: dict[bytes, float] = {}
        self.firing: set[bytes] = set()  # keys of scopes with an alert firing
        self.quiet_after_s = max(self.rules.windows_s)

    async def consume(self, stream: faust.StreamT[bytes]) -> None:
        """The agent: ticks publish, every other record is applied scope by scope."""
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
                await self.judge_quiet(event.message.partition, now)
                await self.publish(event.message.partition, now)
                continue
            for key, sources in batch.scopes.items():
                await self.apply(key, sources, now)

    async def apply(self, key: str, sources: dict[str, list[Entry]], now: float) -> None:
        """A scope's increments, then its new alerts (acknowledged), then its state."""
        family, scope = split_key(key)
        stored = self.table.get(key.encode())
        windows = ScopeWindows.from_bytes(stored) if stored is not None else ScopeWindows(family)
        applied = windows.apply(sources, self.plan, now)
        if applied.duplicates:
            metrics.WINDOW_ITEMS_SKIPPED.labels("replayed").inc(applied.duplicates)
        if applied.late:
            metrics.WINDOW_ITEMS_SKIPPED.labels("expired").inc(applied.late)
            logger.warning(
                "%d increments for %s arrived after their window expired", applied.late, key
            )
        if not applied.advanced:
            return
        await self.judge(key.encode(), scope, windows, windows.high, now)

    async def judge(
        self, key: bytes, scope: str, windows: ScopeWindows, at: float, now: float
    ) -> None:
        """The scope's notifications due at event time `at`, then its state."""
        for alert in evaluate(scope, windows, self.plan, self.rules, at, now):
            await self.raise_alert(alert)
        self.table[key] = windows.to_bytes()
        self.watch(key, windows)

    async def judge_quiet(self, partition: int, now: float) -> None:
        """Scopes of the partition with an alert firing and no increment for a whole alert
        window: judged at the wall clock, where their windows are empty."""
        for key in list(self.firing):
            if scope_partition(key.decode(), self.partitions) != partition:
                continue
            stored = self.table.get(key)
            if stored is None:
                self.firing.discard(key)
                continue
            windows = ScopeWindows.from_bytes(stored)
            if now - windows.seen_at >= self.quiet_after_s:
                await self.judge(key, split_key(key.decode())[1], windows, now, now)

    async def raise_alert(self, alert: Alert) -> None:
        """Published and acknowledged, unless a run before this one published it."""
        if self.silences.covers(alert.type, alert.scope, alert.raised_at):
            alert = dataclasses.replace(alert, silenced=True)
        if alert.alert_id in self.published:
            logger.info("alert %s is on the alerts topic already; not again", alert.alert_id)
            return
        sent = await self.topics.alerts.send(key=alert.alert_id.encode(), value=alert.to_bytes())
        await sent  # acknowledged before the state that records it is written
        self.published.add(alert.alert_id)
        metrics.ALERTS.labels(alert.type.value, alert.state.value).inc()
        logger.warning(
            "alert %s %s %s%s scope=%s window=%.0f+%ds count=%d value=%.2f threshold=%.2f",
            alert.alert_id,
            alert.type,
            alert.state,
            " (silenced)" if alert.silenced else "",
            masked_scope(alert.scope),
            alert.window_start,
            alert.window_end - alert.window_start,
            alert.count,
            alert.value,
            alert.threshold,
        )

    async def publish(self, partition: int, now: float) -> None:
        """The figures of the partition's scopes that want publishing, then their states."""
        ready = [
            key
            for key, when in self.attention.items()
            if when <= now and scope_partition(key.decode(), self.partitions) == partition
        ]
        sends: list[Any] = []
        updated: dict[bytes, ScopeWindows] = {}
        for key in ready:
            stored = self.table.get(key)
            if stored is None:
                self.attention.pop(key, None)
                continue
            windows = ScopeWindows.from_bytes(stored)
            buckets = windows.unpublished | windows.due_between(
                windows.due_published, now, self.plan
            )
            family, scope = split_key(key.decode())
            target = (
                self.topics.metrics_delivery
                if family is Family.DELIVERY
                else self.topics.metrics_calls
            )
            records = window_records(scope, windows, buckets, self.plan, now)
            sends.extend(
                [await target.send(key=scope.encode(), value=r.to_bytes()) for r in records]
            )
            metrics.WINDOWS_PUBLISHED.labels(family.value).inc(len(records))
            windows.unpublished.clear()
            windows.due_published = now
            updated[key] = windows
        await asyncio.gather(*sends)  # published before the state says so
        metrics.WINDOW_SCOPES.set(len(self.table))
        for key, windows in updated.items():
            self.table[key] = windows.to_bytes()
            self.watch(key, windows)
        if updated:
            logger.info(
                "published %d window records of %d scopes (partition %d)",
                len(sends),
                len(updated),
                partition,
            )

    def watch(self, key: bytes, windows: ScopeWindows) -> None:
        """Note when the scope's windows next want publishing, if ever, and whether an
        alert of it fires."""
        if windows.firing:
            self.firing.add(key)
        else:
            self.firing.discard(key)
        due = windows.next_due(self.plan)
        when = 0.0 if windows.unpublished else due if due is not None else math.inf
        if when == math.inf:
            self.attention.pop(key, None)
        else:
            self.attention[key] = when

    async def rebuild_attention(self) -> None:
        """After a restart or rebalance: what the recovered states still owe publishing."""
        self.attention.clear()
        self.firing.clear()
        for key, stored in self.table.items():
            self.watch(key, ScopeWindows.from_bytes(stored))

    async def tick(self) -> None:
        """The publishing clock: a tick record to each transitions partition this worker owns."""
        tick = TransitionBatch(tick=time.time()).to_bytes()
        transitions_topic = self.topics.transitions.get_topic_name()
        for tp in self.app.assignor.assigned_actives():
            if tp.topic == transitions_topic:
                await self.topics.transitions.send(value=tick, partition=tp.partition)


def register(
    app: faust.App, topics: Topics, settings: Settings, published: set[str], silences: Silences
) -> WindowAgent:
    """The window agent on `app`: its agent, its table's recovery hook and its clock."""
    agent = WindowAgent(app, topics, settings, published, silences)
    app.agent(topics.transitions, name="windows", concurrency=1)(agent.consume)
    agent.table.on_recover(agent.rebuild_attention)
    app.timer(settings.metrics_interval_s, name="window-ticks")(agent.tick)
    return agent
