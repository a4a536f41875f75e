"""The ClickHouse writers on the real broker and chDB: events, window figures and alerts
land in their tables, re-delivered records never count twice, and a writer whose
ClickHouse is unreachable keeps its place in Kafka."""

from __future__ import annotations

import logging
import random
import socket
import time

import orjson
import pytest

from contract.alerts import Alert, AlertState, AlertType, fingerprint, make_alert_id
from contract.deadletters import Reason, Stage
from contract.settings import Settings
from contract.topics import Topic
from contract.windows import CallWindow, DeliveryWindow
from query.reports import Filters, run_report
from sinks.clickhouse.rows import dead_letter_row, event_row, record_row
from sinks.clickhouse.store import Store
from sinks.clickhouse.writer import RowMapper, table_writer
from tests import scenario
from tests.callbacks import sms as callback
from tests.harness import Running, committed_total, produce, wait_for
from tests.sink_data import T0, records, sms

pytestmark = pytest.mark.kafka


def _writer(settings: Settings, store: Store, topic: Topic, mapper: RowMapper, group: str):
    return table_writer(settings, store, topic, group=group, name=group, mapper=mapper)


def _count(store: Store, table: str, final: bool = True) -> int:
    return int(store.query(f"SELECT count() FROM {store.table(table)}{' FINAL' * final}")[0][0])


def test_redelivered_and_replayed_events_count_once(topics: Settings, store: Store) -> None:
    """Every callback is produced once, 30% again (a provider retry: same SID and status,
    later receipt), some out of order; then the whole topic is replayed by a second
    group. Merges are stopped so the copies stay on disk: FINAL and the keys hide them."""
    rng = random.Random(5)
    truth = {"spring": {"delivered": 0, "undelivered": 0, "failed": 0}, "fall": {}}
    truth["fall"] = dict(truth["spring"])
    events = []
    for i in range(300):
        campaign = "spring" if i % 3 else "fall"
        final = rng.choice(["delivered"] * 7 + ["undelivered", "failed"])
        truth[campaign][final] += 1
        sid = f"SM{i:032x}"
        chain = [
            sms(sid, s, T0 + i + k, campaign=campaign)
            for k, s in enumerate(["queued", "sent", final])
        ]
        if i % 10 == 0:
            chain.reverse()  # the receipt overtakes the earlier statuses
        events += chain
    duplicates = [
        sms(e.sid, e.status or "", e.received_at + 5, campaign=e.campaign)
        for e in rng.sample(events, 270)
    ]
    store.command(f"SYSTEM STOP MERGES {store.table('sms_events')}")
    produce(topics, Topic.EVENTS, records(events + duplicates))

    # (each wait ends before the loop moves on, so the lambdas see their own `group`)
    for group in ("events", "replay"):
        with Running(_writer(topics, store, Topic.EVENTS, event_row, group)):
            wait_for(
                lambda: committed_total(topics, topics.topic_prefix + group, Topic.EVENTS) == 1170,  # noqa: B023
                what=f"{group}: every record written and committed",
            )
    # Each group wrote every key at least once (copies inside one insert block collapse
    # at insert), so at least two physical rows per key are on disk.
    assert _count(store, "sms_events", final=False) >= 1800
    assert _count(store, "sms_events") == 900  # one row per (MessageSid, MessageStatus)
    report = {r["campaign"]: r for r in run_report(store, "delivery", Filters())}
    for campaign, counts in truth.items():
        row = report[campaign]
        assert row["messages"] == sum(counts.values())
        assert {k: row[k] for k in counts} == counts
        expected_rate = round(counts["delivered"] / sum(counts.values()), 4)
        assert row["delivery_rate"] == pytest.approx(expected_rate)


def test_a_burst_is_written_once_read_not_at_its_batch_age(topics: Settings, store: Store) -> None:
    """The writer closes its batch when a consume comes back empty (it has caught up),
    so the end of a burst is queryable at once rather than after the batch age."""
    patient = topics.model_copy(update={"sink_batch_seconds": 120.0})
    produce(patient, Topic.EVENTS, records([sms(f"SM{i:032x}", "sent", T0 + i) for i in range(50)]))
    with Running(_writer(patient, store, Topic.EVENTS, event_row, "events")):
        wait_for(
            lambda: committed_total(patient, patient.topic_prefix + "events", Topic.EVENTS) == 50,
            what="the burst written and committed well before its batch age",
            timeout=30,
        )
    assert _count(store, "sms_events") == 50


def test_window_figures_wait_out_their_batch_age(topics: Settings, store: Store) -> None:
    """The window-figure writers (`close_early=False`, as the sink runs them) hold a
    caught-up batch until its age: one insert, one part, per age rather than per burst.
    A writer that closes early would have written the second burst within a second."""
    group = "dw-aged"
    first = [_delivery(f"campaign:c{i}", 60, T0, delivered=i, updated=T0) for i in range(10)]
    second = [_delivery(f"campaign:d{i}", 60, T0, delivered=i, updated=T0) for i in range(10)]
    writer = table_writer(
        topics,
        store,
        Topic.METRICS_DELIVERY,
        group=group,
        name=group,
        mapper=record_row("delivery_windows", DeliveryWindow),
        age_s=4.0,
        close_early=False,
    )
    produce(topics, Topic.METRICS_DELIVERY, [(w.scope, w.to_bytes()) for w in first])
    with Running(writer):

        def written() -> int:
            return committed_total(topics, topics.topic_prefix + group, Topic.METRICS_DELIVERY)

        wait_for(lambda: written() == 10, what="the first burst, at its batch age", timeout=60)
        produce(topics, Topic.METRICS_DELIVERY, [(w.scope, w.to_bytes()) for w in second])
        time.sleep(1.5)
        assert written() == 10, "the second burst was written before its batch age"
        assert _count(store, "delivery_windows") == 10
        wait_for(lambda: written() == 20, what="the second burst, at its batch age", timeout=60)
    assert _count(store, "delivery_windows") == 20


def _delivery(scope: str, window_s: int, start: float, delivered: int, updated: float):
    return DeliveryWindow(
        scope=scope,
        window_s=window_s,
        window_start=start,
        window_end=start + window_s,
        sent=delivered + 2,
        delivered=delivered,
        undelivered=1,
        failed=1,
        unconfirmed=0,
        delivery_rate=delivered / (delivered + 2),
        updated_at=updated,
    )


def _calls(scope: str, start: float, mos: list[float], updated: float) -> CallWindow:
    return CallWindow(
        scope=scope,
        window_s=60,
        window_start=start,
        window_end=start + 60,
        calls=len(mos),
        completed=len(mos),
        failed=0,
        busy=0,
        no_answer=0,
        canceled=0,
        duration_s=30 * len(mos),
        mos_count=len(mos),
        mos_sum=sum(mos),
        mos_mean=sum(mos) / len(mos),
        updated_at=updated,
    )


def test_window_figures_and_alerts_keep_their_latest_version_once(
    topics: Settings, store: Store
) -> None:
    """A window figure is re-published as the window fills (a later updated_at wins,
    whatever order the copies arrive in); an alert is re-delivered under one alert_id.
    The per-minute views read them without touching raw events."""
    spring, number = "campaign:spring", "number:+15550001111"
    deliveries = [
        _delivery(spring, 60, T0, delivered=5, updated=T0 + 10),
        _delivery(spring, 60, T0, delivered=8, updated=T0 + 50),
        _delivery(spring, 60, T0 + 60, delivered=4, updated=T0 + 70),
        _delivery(spring, 900, T0, delivered=12, updated=T0 + 70),
        _delivery(number, 60, T0, delivered=3, updated=T0 + 20),
        _delivery(spring, 60, T0, delivered=5, updated=T0 + 10),  # a late copy of the first
    ]
    calls = [
        _calls(number, T0, [4.0, 3.0], T0 + 30),
        _calls(number, T0, [4.0, 3.0, 2.0], T0 + 59),
        _calls(number, T0, [4.0, 3.0], T0 + 30),
    ]
    alert_id = make_alert_id(
        fingerprint(AlertType.SMS_FAILURES, spring, "900s"), T0, AlertState.FIRING
    )
    alert = Alert(alert_id, AlertType.SMS_FAILURES, spring, T0, T0 + 900, 100, 100, 100, T0 + 80)
    produce(topics, Topic.METRICS_DELIVERY, [(w.scope, w.to_bytes()) for w in deliveries])
    produce(topics, Topic.METRICS_CALLS, [(w.scope, w.to_bytes()) for w in calls])
    produce(topics, Topic.ALERTS, [(alert_id, alert.to_bytes())] * 3)

    writers = [
        _writer(
            topics,
            store,
            Topic.METRICS_DELIVERY,
            record_row("delivery_windows", DeliveryWindow),
            "dw",
        ),
        _writer(topics, store, Topic.METRICS_CALLS, record_row("call_windows", CallWindow), "cw"),
        _writer(topics, store, Topic.ALERTS, record_row("alerts", Alert), "alerts"),
    ]
    with Running(*writers):
        # (each wait ends before the loop moves on, so the lambda sees its own values)
        for group, topic, n in (
            ("dw", Topic.METRICS_DELIVERY, 6),
            ("cw", Topic.METRICS_CALLS, 3),
            ("alerts", Topic.ALERTS, 3),
        ):
            wait_for(
                lambda: committed_total(topics, topics.topic_prefix + group, topic) == n,  # noqa: B023
                what=f"{group}: every record written and committed",
            )

    assert (_count(store, "delivery_windows"), _count(store, "call_windows")) == (4, 1)
    [row] = store.query_dicts(f"SELECT * FROM {store.table('alerts')} FINAL")
    assert (row["alert_id"], row["type"], row["scope"], row["count"]) == (
        alert_id,
        "sms_failures",
        spring,
        100,
    )
    assert row["window_end"].timestamp() == T0 + 900
    minutes = store.query_dicts(
        f"SELECT * FROM {store.table('delivery_by_minute')} ORDER BY scope_type, minute"
    )
    assert [
        (r["scope_type"], r["scope_value"], r["minute"].timestamp() - T0, r["delivered"])
        for r in minutes
    ] == [
        ("campaign", "spring", 0, 8),
        ("campaign", "spring", 60, 4),
        ("number", "+15550001111", 0, 3),
    ]
    [hourly] = store.query_dicts(
        "SELECT toStartOfHour(minute) AS hour, sum(delivered) AS hour_delivered, "
        "round(hour_delivered / sum(delivered + undelivered + failed), 4) AS rate "
        f"FROM {store.table('delivery_by_minute')} WHERE scope_value = 'spring' GROUP BY hour"
    )
    assert (hourly["hour_delivered"], hourly["rate"]) == (12, round(12 / 16, 4))
    [mos] = store.query_dicts(f"SELECT * FROM {store.table('mos_by_minute')}")
    assert (mos["scope_value"], mos["calls"], mos["mos_mean"]) == ("+15550001111", 3, 3.0)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_clickhouse_keeps_the_place_then_writes_everything_once(
    topics: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer's ClickHouse is a server URL on a closed port: it retries, commits
    nothing, and stops cleanly. No ClickHouse server runs on this machine, so "back"
    means the writer restarted against a reachable store (the test's chDB), which then
    gets every record exactly once (a plain count, no FINAL)."""
    group = "outage"
    events = [sms(f"SM{i:032x}", "delivered", T0 + i) for i in range(500)]
    produce(topics, Topic.EVENTS, records(events))
    down = topics.model_copy(update={"clickhouse_url": f"http://127.0.0.1:{_closed_port()}"})
    assert down.clickhouse_dsn.startswith("http://")

    outage = _writer(down, Store.deferred(down), Topic.EVENTS, event_row, group)
    with caplog.at_level(logging.ERROR, logger="sinks.clickhouse.writer"), Running(outage):
        wait_for(
            lambda: sum("retrying" in r.getMessage() for r in caplog.records) >= 3,
            what="three failed inserts",
        )
        assert committed_total(topics, topics.topic_prefix + group, Topic.EVENTS) == 0
    assert committed_total(topics, topics.topic_prefix + group, Topic.EVENTS) == 0

    with Running(_writer(topics, store, Topic.EVENTS, event_row, group)):
        wait_for(
            lambda: committed_total(topics, topics.topic_prefix + group, Topic.EVENTS) == 500,
            what="the backlog written and committed",
        )
    assert _count(store, "sms_events", final=False) == 500


def test_a_row_clickhouse_cannot_read_is_dropped_alone_with_its_sid_logged(
    topics: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """One record's NumMedia is not a number: the other rows of its batch are written,
    that one is logged and dropped, and the writer commits and goes on (no poison pill)."""
    good = [sms(f"SM{i:032x}", "delivered", T0 + i) for i in range(99)]
    bad = (
        sms("SM" + "b" * 32, "delivered", T0)
        .to_bytes()
        .replace(b'"num_media":null', b'"num_media":"many"')
    )
    assert b'"many"' in bad
    produce(
        topics, Topic.EVENTS, records(good[:50]) + [("SM" + "b" * 32, bad)] + records(good[50:])
    )
    with (
        caplog.at_level(logging.ERROR),
        Running(_writer(topics, store, Topic.EVENTS, event_row, "events")),
    ):
        wait_for(
            lambda: committed_total(topics, topics.topic_prefix + "events", Topic.EVENTS) == 100,
            what="the batch committed",
        )
    assert _count(store, "sms_events") == 99
    dropped = [r.getMessage() for r in caplog.records if "dropping a row" in r.getMessage()]
    assert len(dropped) == 1 and "SM" + "b" * 32 in dropped[0]


def test_dead_letters_of_both_topics_and_every_version_are_one_row_each(
    topics: Settings, store: Store
) -> None:
    """Letters from the intake and the dispatchers, one written before version 1, one
    written twice (a stage that crashed before its commit) and one replayed: a row per
    letter, in its latest state."""
    statusless = callback("SM1", "", at=T0).to_bytes()
    no_status = scenario.letter(statusless, Reason.NO_STATUS, Stage.INTAKE, Topic.CALLBACKS_SMS, T0)
    again = scenario.letter(statusless, Reason.NO_STATUS, Stage.INTAKE, Topic.CALLBACKS_SMS, T0 + 1)
    refused = scenario.letter(b'{"forward_id": "RE1"}', Reason.FORWARD_REJECTED, Stage.FORWARDS,
                              Topic.FORWARDS, T0 + 2)  # fmt: skip
    legacy = {"kind": "voice", "reason": "AudioInMos='N/A' is not a valid float", "raw": "{}"}
    produce(
        topics,
        Topic.CALLBACKS_DEAD_LETTER,
        [(None, no_status.to_bytes()), (None, again.to_bytes()), (None, orjson.dumps(legacy))],
    )
    produce(
        topics,
        Topic.FORWARDS_DEAD_LETTER,
        [(None, refused.to_bytes()), (None, refused.replayed(at=T0 + 60).to_bytes())],
    )
    writer = table_writer(
        topics,
        store,
        (Topic.CALLBACKS_DEAD_LETTER, Topic.FORWARDS_DEAD_LETTER),
        group="dead-letters",
        name="dead-letters",
        mapper=dead_letter_row(topics.topic_prefix),
    )
    with Running(writer):
        wait_for(lambda: _count(store, "dead_letters") == 3, what="three letters")
    rows = store.query(
        f"SELECT reason, stage, topic, state, sid, toUnixTimestamp64Milli(dead_at) / 1000 "
        f"FROM {store.table('dead_letters')} FINAL ORDER BY reason, topic"
    )
    assert rows == [
        ("forward_rejected", "forwards", "forwards", "replayed", None, T0 + 2),
        ("no_status", "intake", "callbacks.sms", "dead", None, T0 + 1),
        ("unreadable_value", "intake", "callbacks.voice", "dead", None, 0.0),
    ]
