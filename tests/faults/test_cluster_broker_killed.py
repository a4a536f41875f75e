"""A three-broker KRaft cluster (topics replicated three times, two in sync), one broker
SIGKILLed mid-campaign and restarted: every callback the edge acknowledged is in
ClickHouse once, the reports count none twice, alerts and forwards are exactly the
campaign's, and the edge answered 503 only within the failover window, which the test
measures and prints.

The broker killed is the one that leads the most partitions of the raw topics. The
campaign is sent as the provider would, but with one try per callback, so that every
503 is seen; the callbacks refused are sent again once the campaign is over, as the
provider's retry would, so the whole campaign's ground truth applies.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from contract.alerts import Alert
from contract.kafka import ensure_topics
from contract.kinds import SPECS
from contract.settings import Settings
from contract.topics import Topic, topic_name
from processors.app import app_id
from simulate.alerts import Thresholds
from simulate.callbacks import Callback
from simulate.campaign import Scenario, generate
from simulate.sender import edge_targets, send
from switchboard.broker import LocalBroker, LocalCluster
from tests.fake_signalwire import FakeSignalWire
from tests.harness import (
    ROOT,
    Stage,
    chdb_rows,
    drained,
    group_lag,
    isolated_settings,
    settings_env,
    wait_for,
    warm_idempotence,
)
from tests.proc_traffic import read_all
from tests.sink_data import with_signalwire

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ALERT_TO, FORWARD_FROM, FORWARD_TO = "+15550007777", "+15550009999", "+15550008888"
RATE = 160  # callbacks per second: the campaign lasts about CALLBACKS / RATE seconds
CALLBACKS = 2_400
KILL_AFTER_S, DOWN_FOR_S = 5.0, 2.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("kafka-cluster"), nodes=3)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _busiest(cluster: LocalCluster, settings: Settings) -> LocalBroker:
    """The node that leads the most partitions of the test's raw topics."""
    names = {topic_name(spec.raw_topic, settings.topic_prefix) for spec in SPECS.values()}
    topics = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(timeout=10).topics
    leaders = Counter(
        p.leader for name in names for p in topics[name].partitions.values() if p.leader >= 0
    )
    [(node_id, _)] = leaders.most_common(1)
    return next(node for node in cluster.nodes if node.node_id == node_id)


def _replication(cluster: LocalCluster, settings: Settings) -> tuple[set[int], set[str]]:
    """Replicas per partition and min.insync.replicas of every topic of the test's."""
    client = AdminClient({"bootstrap.servers": cluster.bootstrap})
    topics = {
        name: md
        for name, md in client.list_topics(timeout=10).topics.items()
        if name.startswith(settings.topic_prefix)
    }
    replicas = {len(p.replicas) for md in topics.values() for p in md.partitions.values()}
    futures = client.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in topics])
    in_sync = {f.result()["min.insync.replicas"].value for f in futures.values()}
    return replicas, in_sync


def _report(settings: Settings, name: str) -> list[dict[str, Any]]:
    """`switchboard report NAME`'s rows, from a fresh process on the sink's store."""
    out = subprocess.run(
        [sys.executable, "-m", "switchboard", "report", name, "--format", "json"],
        env=settings_env(settings) | {"SWITCHBOARD_API_PORT": "9"},  # no API: read the store
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def test_a_broker_killed_mid_campaign_loses_nothing_and_counts_nothing_twice(
    cluster: LocalCluster, fake: FakeSignalWire, tmp_path: Path
) -> None:
    settings = with_signalwire(
        isolated_settings(
            cluster.bootstrap,
            tmp_path,
            topic_replication=3,
            topic_min_insync_replicas=2,
            clickhouse_database="switchboard",
            # count alerts at thresholds the campaign reaches; rate and MOS alerts (judged
            # on figures that move) out of reach, so the expected alerts are certain
            sms_failure_threshold=10,
            call_failure_threshold=5,
            failure_rate_pct=100.0,
            mos_floor=1.0,
            metrics_interval_s=0.5,
            alert_report_wait_s=5,
            sink_session_timeout_ms=6000,
        ),
        fake.base_url,
        alert_to=ALERT_TO,
        forward_from=FORWARD_FROM,
        forward_to=FORWARD_TO,
    )
    traffic = generate(
        Scenario(callbacks=CALLBACKS, seed=22, duplicate_rate=0.05, reorder_rate=0.05),
        Thresholds.from_settings(settings),
    )
    truth = traffic.truth
    expected_alerts = {(a["type"], a["scope"]) for a in truth.alerts}
    assert expected_alerts and all(a["on"] == "count" for a in truth.alerts)
    assert truth.recordings and truth.transcriptions

    ensure_topics(settings)
    assert _replication(cluster, settings) == ({3}, {"2"})
    warm_idempotence(settings)
    stages = [Stage(name, settings, tmp_path).start() for name in ("sink", "process", "ingest")]
    edge = f"http://127.0.0.1:{settings.ingest_port}"
    victim = _busiest(cluster, settings)
    # index in the campaign -> (sent at, answered at, status)
    answers: dict[int, tuple[float, float, int]] = {}
    index = {id(cb): i for i, cb in enumerate(traffic.callbacks)}
    outage: dict[str, float] = {}

    def observe(cb: Callback, at: float, status: int) -> None:
        answers[index[id(cb)]] = (at, time.time(), status)

    def kill_and_restart() -> None:
        time.sleep(KILL_AFTER_S)
        outage["killed"] = time.time()
        victim.kill()
        time.sleep(DOWN_FOR_S)
        outage["restarting"] = time.time()
        victim.start()
        outage["restarted"] = time.time()

    try:
        wait_for(
            lambda: send(traffic.callbacks[:1], edge_targets(edge), attempts=1).all_acknowledged,
            timeout=90,
            what="the edge",
        )  # the first callback, twice at most: the campaign has retries of its own
        fault = threading.Thread(target=kill_and_restart)
        fault.start()
        report = send(
            traffic.callbacks,
            edge_targets(edge),
            rate=RATE,
            concurrency=32,
            observe=observe,
            attempts=1,  # every 503 seen; refused callbacks are sent again below
        )
        fault.join(120)
        assert "restarted" in outage, "the killed broker did not come back"
        codes = Counter(status for *_, status in answers.values())
        assert set(codes) <= {204, 503}, codes
        refused = sorted(i for i, (*_, status) in answers.items() if status != 204)
        assert refused, "the broker kill refused nothing: the cluster hid it"
        times = [answers[i][0] for i in refused]
        window_s = max(times) - min(times)
        # the longest wait for a 204 from a callback sent after the kill: the write stall
        stall_s = max(
            answered - sent
            for sent, answered, status in answers.values()
            if status == 204 and sent >= outage["killed"]
        )
        print(
            f"\nbroker {victim.node_id} SIGKILLed {outage['killed'] - report.started_at:.1f} s "
            f"into a {report.elapsed_s:.1f} s campaign of {CALLBACKS} callbacks at {RATE}/s, "
            f"restarted after {outage['restarted'] - outage['killed']:.1f} s; the edge answered "
            f"503 to {len(refused)} callbacks sent within {window_s:.1f} s, from "
            f"{min(times) - outage['killed']:+.1f} s to {max(times) - outage['killed']:+.1f} s "
            f"after the kill; the longest wait for a 204 after it was {stall_s:.1f} s"
        )
        # the failover: the node fenced after its 3 s session, leaders moved, clients
        # told; a broker down for longer than that is no longer a reason to refuse
        assert window_s < 15, f"503s for {window_s:.1f} s"
        again = send(
            [traffic.callbacks[i] for i in refused], edge_targets(edge), concurrency=8
        )  # the provider's retry, with its three tries
        assert again.all_acknowledged, again.statuses

        def recovered() -> bool:
            for stage in stages:  # a stage that died of the outage restarts, as in production
                if not stage.alive():
                    stage.start()
            return drained(settings) and all(
                group_lag(settings, group, topic) == 0
                for group, topic in (
                    (app_id(settings), Topic.TRANSITIONS),
                    (f"{settings.topic_prefix}switchboard-sink-forwards", Topic.FORWARDS),
                    (f"{settings.topic_prefix}switchboard-sink-alert-dispatch", Topic.ALERTS),
                )
            )

        wait_for(recovered, timeout=120, interval=1, what="the stages to drain")
        # faust's own topics (changelogs, repartitions) are replicated alike
        assert _replication(cluster, settings) == ({3}, {"2"})
        raised = {
            (a.type.value, a.scope): a
            for a in (Alert.from_bytes(m.value() or b"") for m in read_all(settings, Topic.ALERTS))
        }
        assert raised.keys() == expected_alerts
        wait_for(
            lambda: (
                len(fake.sent_messages())
                >= len(expected_alerts) + truth.recordings + truth.transcriptions
            ),
            timeout=60,
            what="every alert and forward SMS",
        )
        restarts = [stage.name for stage in stages if stage.proc and stage.proc.poll() is not None]
        for stage in reversed(stages):
            assert stage.terminate() == 0, stage.log()[-3000:]
    finally:
        for stage in stages:
            if stage.alive():
                stage.kill()
    print(f"stages that died of the outage and were restarted: {restarts or 'none'}")

    # every callback once: one row per distinct callback, and the reports are the truth
    counts = ", ".join(
        f"(SELECT count() FROM {{db}}.{spec.table} FINAL) AS `{kind.value}`"
        for kind, spec in SPECS.items()
    )
    [stored] = chdb_rows(settings.clickhouse_dsn, settings.clickhouse_database, f"SELECT {counts}")
    assert stored == truth.unique_by_kind
    assert _report(settings, "delivery") == truth.delivery_report(receipts_timed_out=False)

    # alerts and forwards: one SMS each, with the sink's own credentials, none twice
    sent = fake.sent_messages()
    alerted = Counter(
        (type_, scope)
        for m in sent
        if m["To"] == ALERT_TO
        for type_, scope in expected_alerts
        if m["Body"].startswith(f"Switchboard alert: {type_} for {scope}:")
    )
    assert alerted == Counter(expected_alerts)
    forwards = Counter(m["Body"] for m in sent if m["To"] == FORWARD_TO)
    assert sum(forwards.values()) == truth.recordings + truth.transcriptions
    assert set(forwards.values()) == {1}
