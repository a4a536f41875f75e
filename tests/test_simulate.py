"""The campaign simulator: its ground truth is what the callbacks add up to, and a
simulated campaign through the real edge, Kafka, processors and ClickHouse reports
exactly that truth."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from contract.kinds import SPECS, CallbackKind
from contract.settings import Settings
from query.reports import Filters, run_report
from runtime.consumer import ConsumerRuntime
from simulate.alerts import Thresholds
from simulate.campaign import Scenario, generate
from simulate.truth import recount
from sinks.clickhouse.store import Store
from tests.harness import ROOT, Stage, settings_env, wait_for
from tests.harness import event_writer as running_event_writer

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


@pytest.fixture
def pipeline(signed: Settings, tmp_path: Path) -> Iterator[str]:
    """A `switchboard ingest` child and a `switchboard process` child; yields the edge URL."""
    edge = Stage("ingest", signed, tmp_path).start()
    processors = Stage("process", signed, tmp_path).start()
    base = f"http://127.0.0.1:{signed.ingest_port}"

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
def event_writer(signed: Settings, store: Store) -> Iterator[ConsumerRuntime]:
    with running_event_writer(signed, store) as writer:
        yield writer


@pytest.mark.kafka
def test_simulated_campaign_through_the_pipeline_reports_the_ground_truth(
    signed: Settings, pipeline: str, event_writer: ConsumerRuntime, store: Store, tmp_path: Path
) -> None:
    truth_file = tmp_path / "truth.json"
    # the CLI, as a user runs it: it signs with the edge's key from the same settings
    run = subprocess.run(
        [sys.executable, "-m", "switchboard", "simulate", pipeline, "--callbacks", "2000"]
        + ["--seed", "7", "--duplicates", "0.1", "--reorder", "0.1", "--rate", "1000"]
        + ["--concurrency", "16", "--truth", str(truth_file), "--no-progress"],
        env=settings_env(signed),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # every callback was signed as the provider signs, and taken durably
    assert run.returncode == 0, run.stdout + run.stderr
    assert "204" in run.stdout and "2000 callbacks" in run.stdout
    written = json.loads(truth_file.read_text())
    truth = generate(SCENARIO).truth
    assert written == json.loads(json.dumps(truth.to_json()))

    def tables() -> dict[str, int]:
        return {
            kind.value: store.query(f"SELECT count() FROM {store.table(spec.table)} FINAL")[0][0]
            for kind, spec in SPECS.items()
        }

    wait_for(
        lambda: tables() == written["unique_by_kind"],
        timeout=90,
        what=f"one row per distinct callback {written['unique_by_kind']}",
    )
    rows = run_report(store, "delivery", Filters(unconfirmed_after_s=0))
    assert rows == written["delivery"]
    # before the receipt timeout, SMS without a receipt are still pending
    assert run_report(store, "delivery", Filters()) == truth.delivery_report(
        receipts_timed_out=False
    )
