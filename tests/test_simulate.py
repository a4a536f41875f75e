"""The campaign simulator: its ground truth is what the callbacks add up to, and a
simulated campaign through the real edge, Kafka, processors and ClickHouse reports
exactly that truth."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from contract.alerts import Alert
from contract.kinds import SPECS, CallbackKind, snake_case
from contract.settings import Settings
from contract.topics import Topic
from contract.windows import CallWindow, DeliveryWindow
from query.reports import Filters, run_report
from runtime.consumer import ConsumerRuntime
from simulate.alerts import Thresholds
from simulate.campaign import Scenario, generate
from simulate.truth import planned_outcome, recount
from sinks.clickhouse.store import Store
from tests.harness import ROOT, Stage, settings_env, wait_for
from tests.harness import event_writer as running_event_writer
from tests.proc_traffic import latest_by, read_all

SCENARIO = Scenario(callbacks=2_000, seed=7, duplicate_rate=0.10, reorder_rate=0.10)


def test_truth_equals_a_recount_of_the_callbacks_despite_retries_and_late_ones() -> None:
    traffic = generate(SCENARIO)
    callbacks = traffic.callbacks

    # the disorder is really there: retries, and statuses that arrive after a later one
    assert len(callbacks) == 2_000
    assert 150 < traffic.truth.duplicates < 250
    arrived: dict[str, list[int]] = defaultdict(list)
    for cb in callbacks:
        arrived[cb.sid].append(cb.step)
    assert sum(1 for steps in arrived.values() if steps != sorted(steps)) > 50

    recounted = recount(callbacks, SCENARIO.account_sid, traffic.thresholds)
    assert recounted.to_json() | {"scenario": {}} == traffic.truth.to_json() | {"scenario": {}}
    truth = traffic.truth
    assert truth.messages["messages"] > 300
    assert truth.messages["mms"] > 0 and truth.messages["undelivered"] > 0
    assert truth.calls["mos_count"] > 0 and truth.inbound_calls["total"] > 0
    assert truth.recordings > 0


def test_same_seed_same_callbacks_and_every_kind_is_realistic() -> None:
    first, second = generate(SCENARIO), generate(SCENARIO)
    now = 1_767_225_600.0
    assert [cb.params(now) for cb in first.callbacks] == [cb.params(now) for cb in second.callbacks]
    assert generate(Scenario(callbacks=500, seed=8)).callbacks[0].sid != first.callbacks[0].sid

    forms = defaultdict(list)
    for cb in first.callbacks:
        forms[cb.kind].append(cb.params(now))
    statuses = {kind: {f[SPECS[kind].status_param or ""] for f in fs} for kind, fs in forms.items()}
    assert statuses[CallbackKind.SMS] >= {
        "queued", "sending", "sent", "delivered", "undelivered", "failed"
    }  # fmt: skip
    assert statuses[CallbackKind.VOICE] >= {"initiated", "ringing", "in-progress", "completed"}
    completed = [f for f in forms[CallbackKind.VOICE] if f["CallStatus"] == "completed"]
    assert all(
        f["CallDuration"].isdigit() and 1.0 <= float(f["AudioInMos"]) <= 5 for f in completed
    )
    assert all(f["Timestamp"].endswith("GMT") for f in completed)
    inbound = forms[CallbackKind.INBOUND_CALL]
    assert {f["CallStatus"] for f in inbound} == {"completed", "failed"}
    assert all(
        ("CallDuration" in f and "AudioInMos" in f) == (f["CallStatus"] == "completed")
        for f in inbound
    )
    mms = [f for f in forms[CallbackKind.SMS] if f["NumMedia"] != "0"]
    assert mms and {f["MessageStatus"] for f in mms} <= {"queued", "sending", "sent"}


def test_unreadable_values_leave_the_rest_of_the_campaign_and_its_truth_as_it_was() -> None:
    scenario = dataclasses.replace(SCENARIO, unreadable_rate=0.05)
    traffic, plain = generate(scenario), generate(SCENARIO)
    spoiled = {
        (cb.sid, cb.status): cb.unreadable
        for cb in traffic.callbacks
        if cb.unreadable is not None and not cb.duplicate
    }
    assert len(spoiled) == round(0.05 * traffic.truth.unique_callbacks)
    assert {name for name, _ in spoiled.values()} >= {"AudioInMos", "Timestamp", "NumMedia"}
    now = 1_767_225_600.0
    for cb, same in zip(traffic.callbacks, plain.callbacks, strict=True):
        form, expected = cb.params(now), same.params(now)
        if cb.unreadable:
            name, text = cb.unreadable
            assert form[name] == text != expected[name]
            expected[name] = text
        assert form == expected  # nothing else differs
    # the truth is what the readable values say, as a receiver recounts it
    recounted = recount(traffic.callbacks, scenario.account_sid, traffic.thresholds)
    assert recounted.to_json() | {"scenario": {}} == traffic.truth.to_json() | {"scenario": {}}
    lost_mos = sum(
        name == "AudioInMos" and status == "completed" for (_, status), (name, _) in spoiled.items()
    )
    mos = traffic.truth.calls["mos_count"] + traffic.truth.inbound_calls["mos_count"]
    before = plain.truth.calls["mos_count"] + plain.truth.inbound_calls["mos_count"]
    assert lost_mos > 0 and mos == before - lost_mos


def test_thresholds_decide_the_expected_alerts() -> None:
    traffic = generate(
        Scenario(callbacks=3_000, seed=3, campaigns=("flash",)),
        Thresholds(sms_failures=20, call_failures=10_000, mos_min_calls=10_000),
    )
    [alert] = [a for a in traffic.truth.alerts if a["scope"] == "campaign:flash"]
    assert alert["type"] == "sms_failures" and alert["value"] >= 20
    crossing = traffic.callbacks[alert["crossing_index"]]
    assert crossing.campaign == "flash" and crossing.status in ("failed", "undelivered")


@pytest.fixture
def signed(topics: Settings) -> Settings:
    return topics.model_copy(
        update={"signing_key": SecretStr("sim-signing-key"), "public_url": "https://hooks.example"}
    )


@contextmanager
def running_pipeline(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """A `switchboard ingest` child and a `switchboard process` child; yields the edge URL."""
    edge = Stage("ingest", settings, tmp_path).start()
    processors = Stage("process", settings, tmp_path).start()
    base = f"http://127.0.0.1:{settings.ingest_port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_for(healthy, timeout=60, what=f"the edge; its log:\n{edge.log()[-2000:]}")
        yield base
    finally:
        edge.terminate()
        processors.terminate()


@pytest.fixture
def pipeline(signed: Settings, tmp_path: Path) -> Iterator[str]:
    with running_pipeline(signed, tmp_path) as base:
        yield base


def simulate(settings: Settings, edge: str, truth: Path, *args: str) -> dict[str, Any]:
    """`switchboard simulate` as a user runs it (signing with the edge's key from the same
    settings); the ground truth it wrote."""
    run = subprocess.run(
        [sys.executable, "-m", "switchboard", "simulate", edge, "--callbacks", "2000"]
        + ["--seed", "7", "--duplicates", "0.1", "--reorder", "0.1", "--rate", "1000"]
        + ["--concurrency", "16", "--truth", str(truth), "--no-progress", *args],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # every callback was signed as the provider signs, and taken durably
    assert run.returncode == 0, run.stdout + run.stderr
    assert "204" in run.stdout and "2000 callbacks" in run.stdout
    written: dict[str, Any] = json.loads(truth.read_text())
    return written


def stored_rows(store: Store) -> dict[str, int]:
    return {
        kind.value: store.query(f"SELECT count() FROM {store.table(spec.table)} FINAL")[0][0]
        for kind, spec in SPECS.items()
    }


@pytest.fixture
def event_writer(signed: Settings, store: Store) -> Iterator[ConsumerRuntime]:
    with running_event_writer(signed, store) as writer:
        yield writer


@pytest.mark.kafka
def test_simulated_campaign_through_the_pipeline_reports_the_ground_truth(
    signed: Settings, pipeline: str, event_writer: ConsumerRuntime, store: Store, tmp_path: Path
) -> None:
    written = simulate(signed, pipeline, tmp_path / "truth.json")
    truth = generate(SCENARIO).truth
    assert written == json.loads(json.dumps(truth.to_json()))
    wait_for(
        lambda: stored_rows(store) == written["unique_by_kind"],
        timeout=90,
        what=f"one row per distinct callback {written['unique_by_kind']}",
    )
    rows = run_report(store, "delivery", Filters(unconfirmed_after_s=0))
    assert rows == written["delivery"]
    # before the receipt timeout, SMS without a receipt are still pending
    assert run_report(store, "delivery", Filters()) == truth.delivery_report(
        receipts_timed_out=False
    )


@pytest.fixture
def alerting(signed: Settings) -> Settings:
    """Count alerts at thresholds a 2,000-callback campaign reaches; rate and MOS alerts
    (judged on figures that move) out of reach, so the expected alerts are certain."""
    return signed.model_copy(
        update={
            "sms_failure_threshold": 10,
            "call_failure_threshold": 5,
            "failure_rate_pct": 100.0,
            "mos_floor": 1.0,
            "metrics_interval_s": 0.5,
        }
    )


def _latest_windows(settings: Settings, topic: Topic, record: Any) -> list[Any]:
    """The latest published figures of every tumbling window."""
    found = [record.from_bytes(m.value()) for m in read_all(settings, topic)]
    latest = latest_by(found, lambda w: (w.scope, w.window_s, w.window_start))
    return [w for w in latest.values() if w.window_s == settings.window_tumbling_s]


@pytest.mark.kafka
@pytest.mark.slow
def test_five_percent_unreadable_values_lose_no_callback_and_the_figures_are_the_readable_truth(
    alerting: Settings, store: Store, tmp_path: Path
) -> None:
    """5% of the distinct callbacks carry a typed value that cannot be read. Each lands in
    ClickHouse with its SID, status and error code, the value NULL and its text kept;
    delivery, calls, windows and alerts equal the truth counted from the readable values
    (an unreadable MOS is no MOS, not a MOS of 0)."""
    scenario = dataclasses.replace(SCENARIO, unreadable_rate=0.05)
    traffic = generate(scenario, Thresholds.from_settings(alerting))
    with running_pipeline(alerting, tmp_path) as edge, running_event_writer(alerting, store):
        written = simulate(alerting, edge, tmp_path / "truth.json", "--unreadable", "0.05")
        assert written == json.loads(json.dumps(traffic.truth.to_json()))
        wait_for(
            lambda: stored_rows(store) == written["unique_by_kind"],
            timeout=90,
            what=f"one row per distinct callback {written['unique_by_kind']}",
        )

        # every callback with an unreadable value, and only those, has parse errors
        spoiled = {(cb.sid, cb.status): cb for cb in traffic.callbacks if cb.unreadable is not None}
        assert len(spoiled) == round(0.05 * written["unique_callbacks"]) > 80
        found = {}
        for spec in SPECS.values():
            for row in store.query_dicts(
                f"SELECT * FROM {store.table(spec.table)} FINAL WHERE notEmpty(parse_errors)"
            ):
                found[(row[spec.sid_column], row[spec.status_column or ""])] = row
        assert found.keys() == spoiled.keys()
        for key, cb in spoiled.items():
            name, text = cb.unreadable or ("", "")
            row = found[key]
            assert row["parse_errors"] == {name: text}
            assert row[snake_case(name)] is None
            form = cb.params(0.0)
            if "ErrorCode" in form:
                assert row["error_code"] == form["ErrorCode"]

        # delivery and call figures: the readable truth
        assert run_report(store, "delivery", Filters(unconfirmed_after_s=0)) == written["delivery"]
        calls = {(r["kind"], r["campaign"]): r for r in run_report(store, "calls", Filters())}
        expected = {("voice", c): t["calls"] for c, t in written["campaigns"].items()}
        expected[("inbound-call", "")] = written["inbound_calls"]
        assert calls.keys() == expected.keys()
        for key, truth in expected.items():
            row = calls[key]
            assert (row["calls"], row["minutes"], row["mos_calls"]) == (
                truth["total"],
                truth["minutes"],
                truth["mos_count"],
            ), key
            assert row["avg_mos"] == pytest.approx(truth["mos_mean"], abs=0.006), key

        # the processors' windows and alerts: the readable truth too
        outcomes = [
            planned_outcome(e) for e in {cb.sid: cb.entity for cb in traffic.callbacks}.values()
        ]
        readable_mos = [o.mos for o in outcomes if o.mos is not None]

        def windows_settled() -> bool:
            delivery = _latest_windows(alerting, Topic.METRICS_DELIVERY, DeliveryWindow)
            per_campaign = {
                campaign: [
                    sum(getattr(w, f) for w in delivery if w.scope == f"campaign:{campaign}")
                    for f in ("delivered", "undelivered", "failed")
                ]
                for campaign in written["campaigns"]
            }
            account = [
                w
                for w in _latest_windows(alerting, Topic.METRICS_CALLS, CallWindow)
                if w.scope == f"account:{scenario.account_sid}"
            ]
            return per_campaign == {
                c: [t["delivered"], t["undelivered"], t["failed"]]
                for c, t in written["campaigns"].items()
            } and (
                sum(w.mos_count for w in account),
                round(sum(w.mos_sum for w in account), 2),
            ) == (len(readable_mos), round(sum(readable_mos), 2))

        wait_for(windows_settled, timeout=60, interval=1, what="the windows of the readable truth")
        expected_alerts = {(a["type"], a["scope"]) for a in written["alerts"]}
        assert expected_alerts and all(a["on"] == "count" for a in written["alerts"])

        def raised() -> set[tuple[str, str]]:
            records = read_all(alerting, Topic.ALERTS)
            alerts = [Alert.from_bytes(m.value() or b"") for m in records]
            return {(a.type.value, a.scope) for a in alerts}

        wait_for(lambda: raised() == expected_alerts, timeout=60, what=f"alerts {expected_alerts}")
