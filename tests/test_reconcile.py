"""Reconciliation end to end: a campaign whose provider lost a fifth of the final
callbacks, then the reconcile stage against the fake SignalWire that knows the truth;
on the real broker, the real processors and chDB."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contract.alerts import Alert
from contract.envelope import Envelope, Source
from contract.forwards import ForwardRequest
from contract.kinds import SPECS
from contract.settings import Settings
from contract.topics import Topic
from contract.windows import DeliveryWindow
from processors.intake import intake_group
from query.reports import Filters, run_report
from simulate.alerts import Thresholds
from simulate.campaign import Scenario, generate
from simulate.sender import edge_targets, send
from sinks.clickhouse.store import Store
from tests.fake_signalwire import FakeSignalWire
from tests.harness import ROOT, Stage, group_lag, produce, settings_env, wait_for
from tests.harness import event_writer as running_event_writer
from tests.proc_traffic import read_all
from tests.sink_data import with_signalwire
from tests.test_simulate import _latest_windows, running_pipeline, stored_rows

SCENARIO = Scenario(
    callbacks=2_000, seed=7, duplicate_rate=0.10, reorder_rate=0.10, drop_final_rate=0.20
)


@pytest.fixture
def reconciling(topics: Settings, fake: FakeSignalWire) -> Settings:
    """Count alerts a 2,000-callback campaign reaches (rate and MOS ones out of reach);
    SIDs stuck at once; the REST API at the fake, 50 requests/s; forwards on."""
    return with_signalwire(
        topics,
        fake.base_url,
        sms_failure_threshold=10,
        call_failure_threshold=5,
        failure_rate_pct=100.0,
        mos_floor=1.0,
        metrics_interval_s=0.5,
        forward_to="+15550000001",
        forward_from="+15550000002",
        reconcile_sms_after_s=0.0,
        reconcile_call_after_s=0.0,
        reconcile_rate=50.0,
        reconcile_interval_s=1.0,
    )


def _simulate(settings: Settings, edge: str, truth: Path) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-m", "switchboard", "simulate", edge, "--callbacks", "2000"]
        + ["--seed", "7", "--duplicates", "0.1", "--reorder", "0.1", "--drop-final", "20"]
        + ["--rate", "1000", "--concurrency", "16", "--truth", str(truth), "--no-progress"],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "final callbacks withheld" in run.stdout + run.stderr
    written: dict[str, Any] = json.loads(truth.read_text())
    return written


def _drained(settings: Settings) -> bool:
    """The intake and the test's event writer have committed everything."""
    raw = (Topic.CALLBACKS_SMS, Topic.CALLBACKS_VOICE, Topic.CALLBACKS_INBOUND_CALL)
    intake = intake_group(settings)
    return (
        sum(group_lag(settings, intake, t) for t in raw) == 0
        and group_lag(settings, f"{settings.topic_prefix}sink", Topic.EVENTS) == 0
    )


def _reconcile_cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard", "reconcile", "--no-progress", *args],
        env=settings_env(settings) | env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _figures(settings: Settings, store: Store) -> dict[str, Any]:
    """Everything the truth decides: delivery and call reports, failures, windows,
    alerts, forwards, rows per table."""
    calls = {
        (r["kind"], r["campaign"]): (r["calls"], r["minutes"])
        for r in run_report(store, "calls", Filters())
    }
    delivery = _latest_windows(settings, Topic.METRICS_DELIVERY, DeliveryWindow)
    windows = {
        scope: [sum(getattr(w, f) for w in delivery if w.scope == scope) for f in _DELIVERY]
        for scope in sorted({w.scope for w in delivery if w.scope.startswith("campaign:")})
    }
    alerts = [Alert.from_bytes(m.value() or b"") for m in read_all(settings, Topic.ALERTS)]
    forwards = [
        ForwardRequest.from_bytes(m.value() or b"") for m in read_all(settings, Topic.FORWARDS)
    ]
    return {
        "delivery": run_report(store, "delivery", Filters(unconfirmed_after_s=0)),
        "calls": calls,
        "windows": windows,
        "alerts": sorted({(a.type.value, a.scope) for a in alerts}),
        "alert_ids": sorted({a.alert_id for a in alerts}),
        "forwards": len({f.forward_id for f in forwards}),
        "rows": stored_rows(store),
    }


_DELIVERY = ("delivered", "undelivered", "failed")


def _expected(written: dict[str, Any]) -> dict[str, Any]:
    calls = {
        ("voice", c): (t["calls"]["total"], t["calls"]["minutes"])
        for c, t in written["campaigns"].items()
    }
    calls[("inbound-call", "")] = (
        written["inbound_calls"]["total"],
        written["inbound_calls"]["minutes"],
    )
    return {
        "delivery": written["delivery"],
        "calls": calls,
        "windows": {
            f"campaign:{c}": [t[f] for f in _DELIVERY] for c, t in written["campaigns"].items()
        },
        "alerts": sorted({(a["type"], a["scope"]) for a in written["alerts"]}),
        "forwards": written["recordings"] + written["transcriptions"],
        "rows": written["unique_by_kind"],
    }


def _sources(store: Store) -> dict[str, int]:
    """Final statuses by where they came from, over both reconciled kinds."""
    found: dict[str, int] = {}
    for spec in (SPECS[k] for k in SPECS if SPECS[k].table in ("sms_events", "call_events")):
        for source, n in store.query(
            f"SELECT source, count() FROM {store.table(spec.table)} FINAL "
            "WHERE status_rank = 4 GROUP BY source"
        ):
            found[source] = found.get(source, 0) + n
    return found


@pytest.mark.kafka
@pytest.mark.slow
def test_lost_final_callbacks_are_reconciled_to_the_exact_truth(
    reconciling: Settings, fake: FakeSignalWire, store: Store, tmp_path: Path
) -> None:
    settings = reconciling
    traffic = generate(SCENARIO, Thresholds.from_settings(settings))
    withheld = sum(traffic.truth.withheld.values())
    assert traffic.truth.withheld == {"sms": 71, "voice": 11}
    with running_pipeline(settings, tmp_path) as edge, running_event_writer(settings, store):
        written = _simulate(settings, edge, tmp_path / "truth.json")
        assert written == json.loads(json.dumps(traffic.truth.to_json()))
        # the provider knows every message's and call's final status
        fake.learn(list({cb.sid: cb.entity for cb in traffic.callbacks}.values()))
        expected = _expected(written)
        wait_for(lambda: _drained(settings), timeout=90, what="the campaign processed")

        # without reconciliation the figures are wrong: a fifth of the finals is missing
        before = _figures(settings, store)
        assert before["delivery"] != expected["delivery"]
        assert sum(before["rows"].values()) == sum(expected["rows"].values()) - withheld

        stage = Stage("reconcile", settings, tmp_path, "--follow").start()
        try:
            wait_for(
                lambda: _sources(store).get("reconcile") == withheld,
                timeout=90,
                interval=1,
                what=f"{withheld} reconciled final statuses; stage log:\n{stage.log()[-3000:]}",
            )
            wait_for(
                lambda: _drained(settings), timeout=60, what="the reconciled callbacks processed"
            )
            wait_for(
                lambda: (
                    {k: v for k, v in _figures(settings, store).items() if k != "alert_ids"}
                    == expected
                ),
                timeout=60,
                interval=1,
                what="the figures of the truth",
            )
        finally:
            assert stage.terminate() == 0, stage.log()[-3000:]
        assert "source=reconcile" in stage.log()
        fetches = [r for r in fake.requests if r.method == "GET"]
        # one fetch per stuck SID: the withheld finals, and the messages that really stop
        # at sent (MMS, no receipt), which the provider also says are sent
        at_sent = written["messages"]["unconfirmed"]
        assert len(fetches) == withheld + at_sent
        settled = _figures(settings, store)
        # the health signal: final statuses that came from reconciliation, per campaign
        lost: dict[tuple[str, str], int] = {}
        for cb in traffic.withheld:
            lost[(cb.kind.value, cb.campaign)] = lost.get((cb.kind.value, cb.campaign), 0) + (
                not cb.duplicate
            )
        shown = run_report(store, "reconciled", Filters())
        assert {
            (r["kind"], r["campaign"]): r["reconciled"] for r in shown if r["reconciled"]
        } == lost
        settled_voice = settled["rows"]["voice"]

        # a second run changes nothing: what was reconciled is final, the rest unchanged
        again = _reconcile_cli(settings, SWITCHBOARD_RECONCILE_REFETCH_S="0")
        assert again.returncode == 0, again.stdout + again.stderr
        assert _table(again.stdout) == [str(at_sent), "0", str(at_sent), "0", "0"]

        # the same synthetic callbacks again, and the real finals arriving late after all:
        # duplicates, counted nothing
        synthetic = [
            m
            for topic in (Topic.CALLBACKS_SMS, Topic.CALLBACKS_VOICE)
            for m in read_all(settings, topic)
            if Envelope.from_bytes(m.value() or b"").source is Source.RECONCILE
        ]
        assert len(synthetic) == withheld
        for topic in (Topic.CALLBACKS_SMS, Topic.CALLBACKS_VOICE):
            produce(
                settings,
                topic,
                [
                    ((m.key() or b"").decode(), m.value() or b"")
                    for m in synthetic
                    if m.topic() == settings.topic_prefix + topic.value
                ],
            )
        late = send(traffic.withheld, edge_targets(edge), rate=None, concurrency=8, signer=None)
        assert late.all_acknowledged
        wait_for(lambda: _drained(settings), timeout=60, what="the repeats processed")
        after = _figures(settings, store)
        # A call's event rows are keyed by SequenceNumber too, which the REST API does not
        # give: a late real final is one more row beside the reconciled one, as every
        # callback is a row; the state by precedence counts the call once.
        late_calls = traffic.truth.withheld["voice"]
        assert after.pop("rows") == settled.pop("rows") | {"voice": settled_voice + late_calls}
        assert after == settled


def _table(output: str) -> list[str]:
    """The closing table's one row of figures."""
    rows = [line for line in output.splitlines() if "│" in line and any(c.isdigit() for c in line)]
    assert rows, output
    return [cell.strip() for cell in rows[-1].split("│") if cell.strip()]


def test_drop_final_withholds_finals_only_and_keeps_the_truth() -> None:
    plain = generate(dataclasses.replace(SCENARIO, drop_final_rate=0.0))
    dropped = generate(SCENARIO)
    assert dropped.truth.to_json() | {"withheld": {}, "scenario": {}} == plain.truth.to_json() | {
        "scenario": {}
    }
    assert len(dropped.callbacks) + len(dropped.withheld) == len(plain.callbacks)
    assert all(cb.step == len(cb.entity.statuses) - 1 for cb in dropped.withheld)
    # every SID that lost its final was heard of before: reconcile knows to look it up
    heard = {cb.sid for cb in dropped.callbacks}
    assert {cb.sid for cb in dropped.withheld} <= heard
