"""The sink process killed with SIGKILL between a write and its commit, and restarted:
query results equal the ground truth and nothing counts (or sends) twice.

The sink runs as a child process with its own chDB path; results are read through a
subprocess after it stopped (chDB lets one process open one path). The crash is placed
by the fault hook (`SWITCHBOARD_FAULT=<point>`), so it falls exactly where it must.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from contract.forwards import ForwardKind, ForwardRequest
from contract.settings import Settings
from contract.topics import Topic
from tests.fake_signalwire import FakeSignalWire
from tests.harness import ROOT, Stage, chdb_rows, committed_total, produce, settings_env, wait_for
from tests.sink_data import T0, records, sms, with_signalwire

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SINK_GROUP = "switchboard-sink"


def _child_settings(settings: Settings, tmp_path: Path, **extra: object) -> Settings:
    return settings.model_copy(
        update={
            "clickhouse_url": f"chdb://{tmp_path / 'sink-chdb'}",
            "sink_batch_rows": 5000,
            # the killed sink's partitions move to the restarted one after 6 s, not 45
            "sink_session_timeout_ms": 6000,
        }
        | extra
    )


def _rows(settings: Settings, sql: str) -> list[dict[str, Any]]:
    return chdb_rows(settings.clickhouse_dsn, settings.clickhouse_database, sql)


def _delivery_report(settings: Settings) -> list[dict[str, Any]]:
    """`switchboard report delivery`'s rows, from a fresh process (the child's chDB path)."""
    out = subprocess.run(
        [sys.executable, "-m", "switchboard", "report", "delivery", "--format", "json"],
        env=settings_env(settings) | {"SWITCHBOARD_API_PORT": "9"},  # no API: read the store
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def _killed(stage: Stage, timeout: float = 120) -> None:
    proc = stage.proc
    assert proc is not None
    wait_for(lambda: proc.poll() is not None, timeout=timeout, what="the fault's SIGKILL")
    assert proc.returncode == -signal.SIGKILL, stage.log()[-3000:]


def test_sigkill_between_insert_and_commit_then_restart_counts_once(
    topics: Settings, tmp_path: Path
) -> None:
    child = _child_settings(topics, tmp_path)
    rng = random.Random(11)
    truth: dict[str, Counter[str]] = {"spring": Counter(), "fall": Counter()}
    events = []
    for i in range(4000):
        campaign = "spring" if i % 4 else "fall"
        final = rng.choice(["delivered"] * 8 + ["undelivered", "failed"])
        truth[campaign][final] += 1
        sid = f"SM{i:032x}"
        events += [
            sms(sid, s, T0 + i + k, campaign=campaign)
            for k, s in enumerate(["queued", "sent", final])
        ]
    events += [
        sms(e.sid, e.status or "", e.received_at + 3, campaign=e.campaign)
        for e in rng.sample(events, 1200)
    ]  # provider retries
    rng.shuffle(events)
    produce(child, Topic.EVENTS, records(events))
    group = f"{child.topic_prefix}{SINK_GROUP}-events"

    crashing = Stage("sink", child, tmp_path, env={"SWITCHBOARD_FAULT": "events:after-write"})
    crashing.start()
    _killed(crashing)
    # The kill fell between the write and the commit: rows are in, no offset is.
    assert committed_total(child, group, Topic.EVENTS) == 0
    [written] = _rows(child, "SELECT count() AS n FROM {db}.sms_events")
    assert 0 < written["n"] <= len(events)

    restarted_at = time.monotonic()
    restarted = Stage("sink", child, tmp_path).start()
    try:
        wait_for(
            lambda: committed_total(child, group, Topic.EVENTS) == len(events),
            timeout=180,
            what="the restarted sink's commit of every event",
        )
        resumed_s = time.monotonic() - restarted_at
    finally:
        assert restarted.terminate(60) == 0, restarted.log()[-3000:]
    # Static membership: the restarted sink takes its partitions back at once, where a
    # new member would first wait out the killed one's 45 s session.
    assert resumed_s < 30, f"the restarted sink needed {resumed_s:.0f} s"

    [keys] = _rows(child, "SELECT count() AS n FROM {db}.sms_events FINAL")
    assert keys["n"] == 12_000  # one row per (MessageSid, MessageStatus)
    report = {r["campaign"]: r for r in _delivery_report(child)}
    for campaign, counts in truth.items():
        row = report[campaign]
        assert row["messages"] == sum(counts.values())
        assert (row["delivered"], row["undelivered"], row["failed"]) == (
            counts["delivered"],
            counts["undelivered"],
            counts["failed"],
        )
        assert row["delivery_rate"] == pytest.approx(
            round(counts["delivered"] / sum(counts.values()), 4)
        )


def _forward(n: int) -> ForwardRequest:
    return ForwardRequest(
        forward_id=f"RE{n:032x}",
        kind=ForwardKind.RECORDING,
        to="+15550008888",
        from_="+15550009999",
        body=f"You have received a voicemail: https://rec/{n}. The Call SID is CA{n:032x}",
        call_sid=f"CA{n:032x}",
        requested_at=T0,
    )


@pytest.mark.parametrize(
    ("fault", "sms_per_forward"),
    [
        # recorded in `forwards`, killed before the commit: the replay finds the record
        ("forwards:after-handle", 1),
        # the residual window, shown: the provider accepted the SMS and the process died
        # before the record was written, so the restart sends it again, exactly once more
        ("dispatch:after-send", 2),
    ],
)
def test_sigkill_in_the_forwards_dispatcher_then_restart(
    fake: FakeSignalWire, topics: Settings, tmp_path: Path, fault: str, sms_per_forward: int
) -> None:
    fake.reset()
    child = _child_settings(with_signalwire(topics, fake.base_url), tmp_path)
    requests = [_forward(n) for n in range(3)]
    produce(child, Topic.FORWARDS, [(r.forward_id, r.to_bytes()) for r in requests] * 2)
    group = f"{child.topic_prefix}{SINK_GROUP}-forwards"

    crashing = Stage("sink", child, tmp_path, env={"SWITCHBOARD_FAULT": fault})
    crashing.start()
    _killed(crashing)
    assert len(fake.sent_messages()) == 1
    restarted = Stage("sink", child, tmp_path).start()
    try:
        wait_for(
            lambda: committed_total(child, group, Topic.FORWARDS) == 6,
            timeout=120,
            what="every forward request handled",
        )
    finally:
        assert restarted.terminate(60) == 0, restarted.log()[-3000:]

    bodies = Counter(m["Body"] for m in fake.sent_messages())
    assert sorted(bodies.values()) == [1, 1, sms_per_forward]
    rows = _rows(child, "SELECT forward_id, state FROM {db}.forwards FINAL")
    assert sorted((r["forward_id"], r["state"]) for r in rows) == [
        (r.forward_id, "sent") for r in requests
    ]
