"""The processors through the real broker: a `switchboard process` child reads raw callbacks
that the test produces, and the test reads what it published."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import KafkaException

from contract.alerts import Alert, AlertType
from contract.deadletters import DeadLetter
from contract.forwards import ForwardKind, ForwardRequest
from contract.kinds import SPECS, CallbackKind
from contract.settings import Settings
from contract.topics import Topic
from contract.windows import CallWindow, DeliveryWindow
from processors.intake import intake_group
from processors.windows import WindowPlan
from tests.callbacks import ACCOUNT, call, recording, sms, transcription
from tests.harness import Stage, group_lag, wait_for
from tests.proc_traffic import (
    Traffic,
    assert_published,
    campaign_traffic,
    expected_figures,
    expected_window_keys,
    last_whole_minute,
    latest_by,
    produce,
    read_all,
    value,
)

pytestmark = pytest.mark.kafka

MIX = {
    "spring": {"delivered": 480, "undelivered": 30, "failed": 18, "mms": 42, "no_receipt": 30},
    "clearance": {"delivered": 200, "undelivered": 120, "failed": 40, "mms": 20, "no_receipt": 20},
}
NUMBERS = {
    "spring": ("+15550000101", "+15550000102"),
    "clearance": ("+15550000201", "+15550000202"),
}
# With 100 failures or 40% over 200 receipts: clearance has 160 failures of 360 receipts
# (44%); the account 208 of 888 (23%); spring 48 of 528; each clearance number 80 of 180.
EXPECTED_ALERTS = {
    (AlertType.SMS_FAILURES, f"account:{ACCOUNT}"),
    (AlertType.SMS_FAILURES, "campaign:clearance"),
    (AlertType.SMS_FAILURE_RATE, "campaign:clearance"),
}


def process_settings(topics: Settings, **extra: object) -> Settings:
    return topics.model_copy(
        update={
            "sms_failure_threshold": 100,
            "call_failure_threshold": 100,
            "failure_rate_pct": 40.0,
            "failure_rate_min_volume": 200,
            "alert_windows_s": (900,),
            "metrics_interval_s": 0.5,
            "unconfirmed_after_s": 1,
            "process_batch_wait_s": 0.05,
            "forward_to": "+15550000001",
            "forward_from": "+15550000002",
            **extra,
        }
    )


@pytest.fixture
def settings(topics: Settings) -> Settings:
    return process_settings(topics)


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[Stage]:
    stage = Stage("process", settings, tmp_path)
    yield stage
    if stage.alive():
        assert stage.terminate() == 0, stage.log()[-3000:]


def delivery_windows(settings: Settings) -> dict[tuple[str, int, float], DeliveryWindow]:
    records = read_all(settings, Topic.METRICS_DELIVERY)
    windows = [DeliveryWindow.from_bytes(value(m)) for m in records]
    return {(w.scope, w.window_s, w.window_start): w for w in windows}


def window_mismatches(settings: Settings, traffic: Traffic) -> list[str]:
    """Differences between the latest published windows and the ground truth."""
    plan = WindowPlan.from_settings(settings)
    published = delivery_windows(settings)
    keys = expected_window_keys(traffic.bucket, plan)
    problems = []
    expected = expected_figures(traffic)
    for scope, figures in expected.items():
        found = {(s, start) for (sc, s, start) in published if sc == scope}
        if found != keys:
            problems.append(f"{scope}: windows {len(found)} published, {len(keys)} expected")
            continue
        for size, start in keys:
            w = published[(scope, size, start)]
            got = {name: getattr(w, name) for name in figures}
            if got != figures:
                problems.append(f"{scope} {size}s@{start:.0f}: {got} != {figures}")
    extra = {sc for (sc, _, _) in published} - set(expected)
    if extra:
        problems.append(f"unexpected scopes {extra}")
    return problems


def assert_ground_truth(settings: Settings, traffic: Traffic, worker: Stage) -> list[Alert]:
    problems: list[str] = []

    def settled() -> bool:
        problems[:] = window_mismatches(settings, traffic)
        return not problems

    try:
        wait_for(settled, timeout=60, interval=1.0, what="the ground-truth windows")
    except AssertionError:
        pytest.fail("\n".join(problems[:20]) + f"\nworker log:\n{worker.log()[-5000:]}")
    states = latest_by(read_all(settings, Topic.SID_STATE), lambda m: m.key())
    final = {
        k.decode().removeprefix("m:"): orjson.loads(value(m))["status"] for k, m in states.items()
    }
    assert final == traffic.final
    alerts = [Alert.from_bytes(value(m)) for m in read_all(settings, Topic.ALERTS)]
    ids = [a.alert_id for a in alerts]
    assert len(ids) == len(set(ids)), "an alert was published twice"
    assert {(a.type, a.scope) for a in alerts} == EXPECTED_ALERTS
    for a in alerts:
        # the burst's minute sits in 15 windows of 15 minutes; the earliest raised
        assert (a.window_start, a.window_end) == (traffic.bucket - 840, traffic.bucket + 60)
    return alerts


def raw_lag(settings: Settings) -> int | None:
    """Raw callbacks the intake has not committed yet (None: the broker cannot say yet)."""
    try:
        return sum(
            group_lag(settings, intake_group(settings), spec.raw_topic) for spec in SPECS.values()
        )
    except KafkaException:  # e.g. a new topic's partition leader is still being elected
        return None


def test_campaign_figures_and_alerts_equal_the_ground_truth(
    settings: Settings, worker: Stage
) -> None:
    traffic = campaign_traffic(MIX, NUMBERS)
    assert len(traffic.messages) == 1000 and traffic.duplicated == traffic.shuffled == 100
    statusless = sms("SMbad", "")  # nothing to count: the one callback dead-lettered
    produce(settings, traffic.envelopes + [statusless])
    worker.start()

    alerts = assert_ground_truth(settings, traffic, worker)
    assert all(a.count >= a.threshold for a in alerts if a.type is AlertType.SMS_FAILURES)
    events = read_all(settings, Topic.EVENTS)
    assert len(events) == len(traffic.envelopes)  # every callback, duplicates too
    [dead] = read_all(settings, Topic.CALLBACKS_DEAD_LETTER)
    letter = DeadLetter.from_bytes(value(dead))
    assert (letter.reason, letter.sid, letter.topic) == ("no_status", "SMbad", "callbacks.sms")
    assert letter.body() == statusless.to_bytes()
    for topic in (Topic.EVENTS, Topic.METRICS_DELIVERY, Topic.ALERTS, Topic.CALLBACKS_DEAD_LETTER):
        assert_published(settings, topic)


def test_a_worker_killed_mid_stream_ends_with_the_same_results(
    settings: Settings, worker: Stage
) -> None:
    slow = process_settings(settings, process_batch_max=40)
    worker.settings = slow
    traffic = campaign_traffic(MIX, NUMBERS, seed=11)
    total = len(traffic.envelopes)
    # the first 80% hold 118 of the account's 208 failures: its alert comes before the kill
    first, rest = traffic.envelopes[: total * 4 // 5], traffic.envelopes[total * 4 // 5 :]
    produce(slow, first)
    worker.start()
    # once it has raised an alert (so the replay must not raise it again), more traffic
    # arrives and the worker dies in the middle of it
    wait_for(
        lambda: read_all(slow, Topic.ALERTS),
        timeout=60,
        interval=0.1,
        what=f"the first alert; log:\n{worker.log()[-3000:]}",
    )
    produce(slow, rest)
    worker.kill()
    [lag] = wait_for(lambda: (n := raw_lag(slow)) is not None and [n], what="the intake's lag")
    assert lag > 0, "the worker finished before it was killed: nothing was tested"
    worker.start()

    assert_ground_truth(slow, traffic, worker)
    assert "recovered" in worker.log()


def inbound_calls(number: str, mos: list[float], rng: random.Random) -> list:
    bucket = last_whole_minute()
    envelopes = []
    for i, score in enumerate(mos):
        env = call(
            f"CA{number[-4:]}{i:028d}",
            "completed",
            at=bucket + rng.uniform(0, 55),
            kind=CallbackKind.INBOUND_CALL,
            from_=f"+1555100{i:04d}",
            to=number,
            duration=30 + i,
            mos=score,
        )
        envelopes += [env, env] if i % 5 == 0 else [env]  # provider retries
    return envelopes


def call_windows(settings: Settings) -> dict[tuple[str, int], CallWindow]:
    records = [CallWindow.from_bytes(value(m)) for m in read_all(settings, Topic.METRICS_CALLS)]
    return {(w.scope, w.window_s): w for w in records if w.window_s == settings.window_tumbling_s}


@pytest.mark.parametrize("low", [True, False], ids=["low-mos", "healthy"])
def test_low_mos_raises_one_alert_and_healthy_calls_none(
    settings: Settings, worker: Stage, low: bool
) -> None:
    rng = random.Random(3)
    # 20 calls on the poor line; 40 good calls on another keep the account's mean up
    poor = [rng.uniform(2.6, 3.2) if low else rng.uniform(3.9, 4.6) for _ in range(20)]
    good = [rng.uniform(4.3, 4.7) for _ in range(40)]
    envelopes = inbound_calls("+15550000301", poor, rng) + inbound_calls("+15550000302", good, rng)
    produce(settings, envelopes)
    worker.start()

    line = ("number:+15550000301", settings.window_tumbling_s)

    def with_every_call_on_the_line() -> dict[tuple[str, int], CallWindow] | None:
        w = call_windows(settings)
        return w if line in w and w[line].calls == 20 else None

    windows = wait_for(
        with_every_call_on_the_line,
        timeout=60,
        what=f"the call windows; log:\n{worker.log()[-3000:]}",
    )
    w = windows[line]
    assert (w.completed, w.duration_s, w.mos_count) == (20, sum(30 + i for i in range(20)), 20)
    assert w.mos_mean == pytest.approx(sum(round(m, 2) for m in poor) / 20)
    assert windows[(f"account:{ACCOUNT}", settings.window_tumbling_s)].calls == 60
    alerts = [Alert.from_bytes(value(m)) for m in read_all(settings, Topic.ALERTS)]
    if low:
        [alert] = alerts
        assert (alert.type, alert.scope, alert.count) == (AlertType.LOW_MOS, line[0], 20)
        assert alert.value == pytest.approx(w.mos_mean) and alert.threshold == 3.5
        assert_published(settings, Topic.ALERTS)
    else:
        assert alerts == []
    assert_published(settings, Topic.METRICS_CALLS)


def test_recordings_and_transcriptions_are_forwarded_once_each(
    settings: Settings, worker: Stage
) -> None:
    envelopes = []
    for i in range(5):
        envelopes += [
            recording(f"RE{i}", "in-progress", call_sid=f"CA{i}"),
            recording(f"RE{i}", "completed", call_sid=f"CA{i}"),
            recording(f"RE{i}", "completed", call_sid=f"CA{i}"),
        ]
    for i in range(3):
        envelopes += [transcription(f"TR{i}", "completed", call_sid=f"CA{i}")] * 2
    envelopes += [recording("RE9", "absent"), recording("RE9", "completed")]
    produce(settings, envelopes)
    worker.start()

    wait_for(
        lambda: raw_lag(settings) == 0,
        timeout=60,
        what=f"the intake to commit; log:\n{worker.log()[-3000:]}",
    )
    forwards = [ForwardRequest.from_bytes(value(m)) for m in read_all(settings, Topic.FORWARDS)]
    assert sorted((f.kind, f.forward_id) for f in forwards) == [
        (ForwardKind.RECORDING, f"RE{i}") for i in range(5)
    ] + [(ForwardKind.TRANSCRIPTION, f"TR{i}") for i in range(3)]
    assert all(f.to == "+15550000001" and f.from_ == "+15550000002" for f in forwards)
