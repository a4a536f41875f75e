"""Serving the edge with uvicorn (uvloop, httptools), one or more worker processes."""

from __future__ import annotations

import logging
import os
import shutil
import signal
from pathlib import Path

import uvicorn

from contract.errors import ServiceUnavailable
from contract.kafka import wait_for_kafka
from contract.settings import Settings, load_settings
from ingest.app import Edge, create_app
from ingest.metrics import MULTIPROC_DIR
from runtime.signals import exit_cleanly

logger = logging.getLogger(__name__)


def serve(settings: Settings) -> None:
    """Blocks until SIGTERM/SIGINT; uvicorn then stops accepting and the lifespan flushes."""
    _check_kafka(settings)
    logger.info(
        "edge listening on http://%s:%d with %d worker(s)",
        settings.ingest_host,
        settings.ingest_port,
        settings.ingest_workers,
    )
    metrics_dir = None
    if settings.ingest_workers > 1:
        metrics_dir = _multiprocess_metrics(settings)
    # uvicorn restores the previous handlers after its graceful shutdown and re-raises the
    # signal; these exit with 0 (SIGTERM's is runtime.signals.stop_cleanly_while_starting).
    signal.signal(signal.SIGINT, exit_cleanly)
    try:
        uvicorn.run(
            create_app(settings) if metrics_dir is None else "ingest.server:worker_app",
            factory=metrics_dir is not None,
            host=settings.ingest_host,
            port=settings.ingest_port,
            workers=settings.ingest_workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=10,
            backlog=4096,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _check_kafka(settings: Settings) -> None:
    """A broker that refuses our credentials or certificates stops the edge here, with the
    setting to fix (a ConfigurationError); one that does not answer yet does not: the edge
    then serves, answering 503 until Kafka is back, as it does in any outage."""
    try:
        wait_for_kafka(settings, attempts=3)
    except ServiceUnavailable as exc:
        logger.warning("%s; serving anyway, answering 503 until it answers", exc)


def worker_app() -> Edge:
    """The app of one worker process: uvicorn spawns it afresh, so it reads the
    environment (the CLI exported its flags there) and sets up logging itself."""
    from runtime import logs

    logs.configure()
    return create_app(load_settings())


def _multiprocess_metrics(settings: Settings) -> Path:
    """Workers write their metrics to files in one directory and /metrics sums them.

    prometheus_client picks its mode when imported, so the variable is set before uvicorn
    spawns the workers; the directory is this edge's (one per port), emptied at start so a
    previous run's counters do not leak in.
    """
    path = (settings.data_dir / "prometheus" / f"ingest-{settings.ingest_port}").resolve()
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_DIR] = str(path)
    return path
