"""SIGTERM to every stage after the broker is gone: each stops within a bounded time
(a supervisor must not need SIGKILL), saying what it could not finish. Nothing is
lost by it: what was not committed is read again once Kafka is back, and every
callback answered 204 ends in ClickHouse or in its dead-letter table.

This test kills its broker, so it has its own (not the session's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.kafka import ensure_topics
from switchboard.broker import LocalBroker, free_port
from tests.faults.conftest import assert_none_lost
from tests.harness import Stage, drained, isolated_settings, post_form, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_every_stage_stops_on_sigterm_with_the_broker_gone(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "kafka", port=free_port(), heap="384m")
    broker.start()
    settings = isolated_settings(broker.bootstrap, tmp_path)
    ensure_topics(settings)
    stages = {
        name: Stage(name, settings, tmp_path).start() for name in ("sink", "process", "ingest")
    }
    edge = f"http://127.0.0.1:{settings.ingest_port}/callbacks/sms?campaign=gone"
    try:
        wait_for(
            lambda: post_form(edge, {"MessageSid": "SMgone", "MessageStatus": "sent"}) == 204,
            timeout=60,
            what="the edge",
        )
        wait_for(lambda: "sink running" in stages["sink"].log(), timeout=60, what="the sink")
        wait_for(
            lambda: "intake consuming" in stages["process"].log(), timeout=60, what="the intake"
        )
        # a callback with no status: it must end as a dead letter
        assert post_form(edge, {"MessageSid": "SMgone", "AccountSid": "AC1"}) == 204
        broker.kill()
        for name, stage in stages.items():
            # terminate() fails the test if the stage is still running after the timeout
            code = stage.terminate(timeout=45)
            assert code in (0, 1), f"{name} exited {code}\n{stage.log()[-3000:]}"

        # Kafka back: what the stages had not finished is read again, and nothing is lost
        broker.start()
        for name in ("sink", "process"):
            stages[name].start()
        wait_for(lambda: drained(settings), timeout=120, interval=1, what="the stages to drain")
        for name in ("process", "sink"):
            assert stages[name].terminate() == 0, stages[name].log()[-3000:]
        assert_none_lost(settings, {("SMgone", "sent"), ("SMgone", "")})
    finally:
        for stage in stages.values():
            if stage.alive():
                stage.kill()
        broker.stop()
