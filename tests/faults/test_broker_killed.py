"""The Kafka broker killed with SIGKILL mid-campaign and restarted: every callback that
got a 204 is in ClickHouse exactly once (or, without a status, in its dead-letter table),
and callbacks refused meanwhile got 503."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from contract.kafka import ensure_topics
from switchboard.broker import LocalBroker, free_port
from tests.faults.conftest import assert_none_lost, callback_key, sms_callbacks, stored_sms
from tests.harness import Stage, chdb_rows, drained, isolated_settings, post_form, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_acknowledged_callbacks_survive_a_broker_kill(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "kafka", port=free_port())
    broker.start()
    settings = isolated_settings(broker.bootstrap, tmp_path, produce_timeout_s=2.0)
    ensure_topics(settings)
    stages = [Stage(name, settings, tmp_path).start() for name in ("sink", "process", "ingest")]
    edge = f"http://127.0.0.1:{settings.ingest_port}/callbacks/sms?campaign=fault"
    try:
        assert wait_for(
            lambda: post_form(edge, {"MessageSid": "SMwarm", "MessageStatus": "sent"}) == 204,
            timeout=60,
            what="the edge",
        )
        callbacks = sms_callbacks(600)
        answers: dict[int, int] = {}
        killed = threading.Event()

        def send(i: int) -> None:
            answers[i] = post_form(edge, callbacks[i])
            if i == len(callbacks) // 3 and not killed.is_set():
                killed.set()
                broker.kill()
                time.sleep(3)  # callbacks keep arriving while the broker is down
                broker.start()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, range(len(callbacks))))

        codes = Counter(answers.values())
        assert set(codes) <= {204, 503}, codes
        assert codes[503] > 0, "the broker kill refused nothing: it happened too late"
        accepted = {callback_key(callbacks[i]) for i, code in answers.items() if code == 204}

        def recovered() -> bool:
            # A stage that died of the outage is restarted, as `switchboard run` and the
            # compose file's restart policy do: what it had acknowledged must still be there.
            for stage in stages:
                if not stage.alive():
                    stage.start()
            return drained(settings)

        wait_for(recovered, timeout=180, interval=2, what="the stages to recover and drain")
        for stage in reversed(stages):
            assert stage.terminate() == 0, stage.log()[-3000:]
        assert_none_lost(settings, accepted)
        rows = stored_sms(settings)
        posted = {callback_key(c) for c in callbacks} | {("SMwarm", "sent")}
        assert rows <= posted
        counts = chdb_rows(
            settings.clickhouse_dsn,
            settings.clickhouse_database,
            "SELECT count() AS n, uniqExact(message_sid, message_status) AS u "
            "FROM {db}.sms_events FINAL",
        )[0]
        assert counts["n"] == counts["u"], "a callback counts twice"
    finally:
        for stage in stages:
            if stage.alive():
                stage.kill()
        broker.stop()
