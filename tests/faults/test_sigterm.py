"""SIGTERM to every stage mid-campaign: each stops cleanly (exit 0), and after restarts
every acknowledged callback is in ClickHouse exactly once (or, without a status, in its
dead-letter table)."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from contract.settings import Settings
from tests.faults.conftest import assert_none_lost, callback_key, sms_callbacks, stored_sms
from tests.harness import Stage, chdb_rows, drained, post_form, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_sigterm_to_every_stage_loses_nothing(child_settings: Settings, tmp_path: Path) -> None:
    settings = child_settings
    sink = Stage("sink", settings, tmp_path).start()
    process = Stage("process", settings, tmp_path).start()
    ingest = Stage("ingest", settings, tmp_path).start()
    edge = f"http://127.0.0.1:{settings.ingest_port}/callbacks/sms?campaign=term"
    callbacks = sms_callbacks(500)
    try:
        wait_for(lambda: post_form(edge, callbacks[0]) == 204, timeout=60, what="the edge")
        # stopped mid-work, not mid-start (test_sigterm_while_starting covers that)
        wait_for(lambda: "sink running" in sink.log(), timeout=60, what="the sink")
        wait_for(lambda: "intake consuming" in process.log(), timeout=60, what="the intake")
        answers: dict[int, int] = {0: 204}

        def send(i: int) -> None:
            answers[i] = post_form(edge, callbacks[i], timeout=5)
            if i == 700:  # the processors stop and restart while callbacks pour in
                assert process.terminate() == 0, process.log()[-2000:]
                process.start()
            if i == 1000:  # so does the sink
                assert sink.terminate() == 0, sink.log()[-2000:]
                sink.start()
            if i == 1300:  # and the edge stops: what it acknowledged must be kept
                assert ingest.terminate() == 0, ingest.log()[-2000:]

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(send, range(1, len(callbacks))))

        codes = Counter(answers.values())
        assert set(codes) <= {204, 0}, codes  # 0: refused after the edge stopped
        assert codes[0] > 0 and codes[204] > 1000
        accepted = {callback_key(callbacks[i]) for i, code in answers.items() if code == 204}
        wait_for(lambda: drained(settings), timeout=120, interval=1, what="the stages to drain")
        for stage in (process, sink):
            assert stage.terminate() == 0, stage.log()[-2000:]
        assert_none_lost(settings, accepted)
        rows = stored_sms(settings)
        [counts] = chdb_rows(
            settings.clickhouse_dsn,
            settings.clickhouse_database,
            "SELECT count() AS n, uniqExact(message_sid, message_status) AS u "
            "FROM {db}.sms_events FINAL",
        )
        assert counts["n"] == counts["u"] == len(rows)
    finally:
        for stage in (ingest, process, sink):
            if stage.alive():
                stage.kill()


@pytest.mark.parametrize("stage", ["ingest", "process", "sink"])
@pytest.mark.parametrize("after_s", [0.3, 1.5])
def test_sigterm_while_starting(
    child_settings: Settings, tmp_path: Path, stage: str, after_s: float
) -> None:
    """A stage stopped while it imports, waits for Kafka or opens chDB has acknowledged
    nothing: it must exit 0 at once, not die by the signal (a supervisor reads -15 as
    a crash)."""
    starting = Stage(stage, child_settings, tmp_path).start()
    time.sleep(after_s)
    try:
        assert starting.terminate(timeout=20) == 0, starting.log()[-2000:]
    finally:
        if starting.alive():
            starting.kill()
