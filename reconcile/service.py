"""`switchboard reconcile --follow`: the stage as a process (what `switchboard run` starts)."""

from __future__ import annotations

import logging
import signal

from prometheus_client import start_http_server

from contract.kafka import ensure_topics, wait_for_kafka
from contract.settings import Settings
from reconcile.stage import reconcile_consumer

logger = logging.getLogger(__name__)


def run(settings: Settings, metrics_port: int | None = None) -> None:
    """Blocks until SIGTERM/SIGINT; then the pass in hand is interrupted and waited for."""
    wait_for_kafka(settings)
    ensure_topics(settings)
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1")
    runtime = reconcile_consumer(settings)

    def stop(signum: int, _frame: object) -> None:
        logger.info("reconcile stopping (signal %d)", signum)
        runtime.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info(
        "reconcile following stuck SIDs: SMS after %.0f s, calls after %.0f s, %.1f requests/s",
        settings.reconcile_sms_after_s,
        settings.reconcile_call_after_s,
        settings.reconcile_rate,
    )
    runtime.run()
