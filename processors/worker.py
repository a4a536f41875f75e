"""Running the processors: one faust worker, Prometheus metrics on loopback."""

from __future__ import annotations

import logging
import os

from faust.worker import Worker
from prometheus_client import start_http_server

from contract.kafka import ensure_topics, wait_for_kafka
from contract.settings import Settings
from processors import normalizer
from processors.app import create_app

logger = logging.getLogger(__name__)


def build(settings: Settings):  # noqa: ANN201 - faust's App is untyped
    app, topics = create_app(settings)
    normalizer.register(app, topics)
    return app


def run(settings: Settings, metrics_port: int | None = None) -> None:
    """Blocks until SIGTERM/SIGINT; faust then commits what it processed and stops."""
    wait_for_kafka(settings)
    ensure_topics(settings)  # faust does not create source topics, and wants our partitions
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1")
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = build(settings)
    logger.info("processors starting against %s", settings.kafka_bootstrap)
    code = 1
    try:
        Worker(app, loglevel="info", redirect_stdouts=False).execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except Exception:
        logger.exception("processors crashed")
    finally:
        # faust has already stopped and committed by now, but after a crash it can leave
        # a non-daemon consumer thread behind that keeps the process alive forever; a
        # supervisor must see the exit to restart us.
        logging.shutdown()
        os._exit(code)
