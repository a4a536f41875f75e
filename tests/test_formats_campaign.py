"""The same simulated campaign, sent in each format (Compatibility forms, SignalWire's
JSON webhooks, Twilio Event Streams, and a mix), gives the same ClickHouse figures and
the same alerts, on the real broker and chDB.

One pipeline for all formats: each format's campaign has its own namespace (SIDs,
numbers, campaign names, account), so they sit side by side and each is compared with
its own ground truth, and then with the others. Every request is signed in its
format's scheme, so the edge checks all of them too. Inbound calls are left out: they
carry no campaign, so they could not be told apart (the shared fixtures cover them)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from contract.alerts import Alert
from contract.envelope import Envelope
from contract.kinds import SPECS
from contract.settings import Settings
from contract.topics import Topic
from query.reports import Filters, run_report
from simulate.alerts import Thresholds
from simulate.campaign import Scenario, Traffic, generate
from simulate.formats import SimFormat
from simulate.sender import Signer, edge_targets, send
from sinks.clickhouse.store import Store
from tests.harness import event_writer, wait_for
from tests.proc_traffic import read_all
from tests.test_simulate import running_pipeline

pytestmark = [pytest.mark.kafka]

KEY = "formats-signing-key"
PUBLIC = "https://hooks.example"
BASE = Scenario(
    callbacks=1_200,
    seed=11,
    duplicate_rate=0.10,
    reorder_rate=0.10,
    sms_share=0.75,
    voice_share=0.25,
    inbound_share=0.0,
)


@pytest.fixture
def alerting(topics: Settings) -> Settings:
    """Count alerts a 1,200-callback campaign reaches; rate and MOS alerts out of reach."""
    return topics.model_copy(
        update={
            "signing_key": SecretStr(KEY),
            "public_url": PUBLIC,
            "sms_failure_threshold": 8,
            "call_failure_threshold": 3,
            "failure_rate_pct": 100.0,
            "mos_floor": 1.0,
            "metrics_interval_s": 0.5,
        }
    )


def traffic_in(fmt: SimFormat, namespace: int, settings: Settings) -> Traffic:
    scenario = dataclasses.replace(
        BASE,
        namespace=namespace,
        campaigns=(f"spring-{fmt}", f"flash-{fmt}"),
        account_sid=f"AC{namespace:032x}",
    )
    return generate(scenario, Thresholds.from_settings(settings))


def _plain(value: str, fmt: SimFormat, traffic: Traffic) -> str:
    """A campaign or scope name without what makes it this format's."""
    value = value.replace(f"-{fmt}", "").replace(traffic.scenario.account_sid, "account")
    return value


def test_the_same_campaign_in_every_format_gives_the_same_figures_and_alerts(
    alerting: Settings, store: Store, tmp_path: Path
) -> None:
    formats = list(SimFormat)
    traffic = {fmt: traffic_in(fmt, i + 1, alerting) for i, fmt in enumerate(formats)}
    truths = {fmt: t.truth.to_json() for fmt, t in traffic.items()}
    # the same campaign: the truths differ only in names
    assert len({str(t["delivery"]).replace(f"-{f}", "") for f, t in truths.items()}) == 1
    signer = Signer(KEY, PUBLIC)
    unique: Counter[str] = Counter()
    with running_pipeline(alerting, tmp_path) as edge, event_writer(alerting, store):
        for fmt, t in traffic.items():
            report = send(
                t.callbacks, edge_targets(edge), rate=1500, concurrency=16, signer=signer, fmt=fmt
            )
            assert report.all_acknowledged, (fmt, report.statuses)
            unique.update(truths[fmt]["unique_by_kind"])

        def stored() -> dict[str, int]:
            return {
                kind.value: store.query(f"SELECT count() FROM {store.table(spec.table)} FINAL")[0][
                    0
                ]
                for kind, spec in SPECS.items()
                if unique[kind.value]
            }

        # each format arrived as itself
        for topic, kinds in ((Topic.CALLBACKS_SMS, 3), (Topic.CALLBACKS_RECORDING, 2)):
            arrived = Counter(
                Envelope.from_bytes(m.value() or b"").format for m in read_all(alerting, topic)
            )
            assert len(arrived) == kinds and min(arrived.values()) > 10, (topic, arrived)
        wanted = {k: n for k, n in unique.items() if n}
        wait_for(lambda: stored() == wanted, timeout=90, what=f"one row per callback {wanted}")

        delivery = run_report(store, "delivery", Filters(unconfirmed_after_s=0))
        calls = run_report(store, "calls", Filters())
        figures: dict[SimFormat, Any] = {}
        for fmt, t in traffic.items():
            mine = [r for r in delivery if r["campaign"].endswith(f"-{fmt}")]
            assert mine == truths[fmt]["delivery"], fmt
            voice = {r["campaign"]: r for r in calls if r["campaign"].endswith(f"-{fmt}")}
            for campaign, truth in truths[fmt]["campaigns"].items():
                row = voice[campaign]
                expected = truth["calls"]
                assert (row["calls"], row["minutes"], row["mos_calls"]) == (
                    expected["total"],
                    expected["minutes"],
                    expected["mos_count"],
                ), (fmt, campaign)
                assert row["avg_mos"] == pytest.approx(expected["mos_mean"], abs=0.006)
            figures[fmt] = [
                {k: _plain(v, fmt, t) if k == "campaign" else v for k, v in r.items()}
                for r in mine + sorted(voice.values(), key=lambda r: r["campaign"])
            ]
        first = figures[formats[0]]
        assert all(f == first for f in figures.values()), figures

        expected_alerts = {
            fmt: {(a["type"], a["scope"]) for a in truths[fmt]["alerts"]} for fmt in formats
        }
        assert all(expected_alerts.values())

        def raised() -> dict[SimFormat, set[tuple[str, str]]]:
            alerts = [Alert.from_bytes(m.value() or b"") for m in read_all(alerting, Topic.ALERTS)]
            return {
                fmt: {
                    (a.type.value, a.scope)
                    for a in alerts
                    if f"-{fmt}" in a.scope
                    or t.scenario.account_sid in a.scope
                    or any(n in a.scope for n in _numbers(t))
                }
                for fmt, t in traffic.items()
            }

        wait_for(lambda: raised() == expected_alerts, timeout=60, what=f"alerts {expected_alerts}")
        plain = {
            fmt: sorted((kind, _plain(scope, fmt, traffic[fmt])) for kind, scope in found)
            for fmt, found in raised().items()
        }
        # the same alerts, numbers aside (each format has its own)
        shapes = {fmt: sorted((k, s.split(":")[0]) for k, s in p) for fmt, p in plain.items()}
        assert all(s == shapes[formats[0]] for s in shapes.values()), plain


def _numbers(t: Traffic) -> set[str]:
    return {cb.entity.our_number for cb in t.callbacks}
