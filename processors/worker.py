"""Running the processors: the intake thread and one faust worker, metrics on loopback."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import faust
from faust.worker import Worker
from prometheus_client import start_http_server

from contract.kafka import ensure_topics, wait_for_kafka
from contract.settings import Settings
from contract.silences import Silences
from contract.templates import check_templates
from processors import window_agent
from processors.app import create_app
from processors.intake import intake_consumer
from processors.replay import published_alert_ids
from processors.silences import follow, load
from runtime.consumer import ConsumerRuntime

logger = logging.getLogger(__name__)

STOP_GRACE_S = 25.0  # from SIGTERM to exit; `switchboard run` waits 30 s before SIGKILL


def build(
    settings: Settings, published: set[str] | None = None, silences: Silences | None = None
) -> faust.App:
    app, topics = create_app(settings)
    window_agent.register(
        app,
        topics,
        settings,
        published if published is not None else set(),
        silences if silences is not None else Silences(),
    )
    return app


def run(settings: Settings, metrics_port: int | None = None) -> None:
    """Blocks until SIGTERM/SIGINT; then the intake and faust commit what they did and stop."""
    # until faust installs its own handlers, SIGTERM exits cleanly (switchboard.__main__)
    check_templates(settings)
    wait_for_kafka(settings)
    ensure_topics(settings)  # faust does not create source topics, and wants our partitions
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1")
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    silences = load(settings)
    follow(settings, silences)
    app = build(
        settings,
        published_alert_ids(settings, since=time.time() - settings.window_expires_s),
        silences,
    )
    intake = intake_consumer(settings)
    failed = threading.Event()
    thread = threading.Thread(target=_run_intake, args=(intake, failed), name="intake")

    @app.task  # type: ignore[untyped-decorator]  # faust's decorators are untyped
    async def start_intake() -> None:
        # started by the faust worker, after its SIGTERM handler: a stop then finds both running
        thread.start()

    logger.info("processors starting against %s", settings.kafka_bootstrap)
    code = 1
    try:
        _BoundedWorker(app, loglevel="info", redirect_stdouts=False).execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except Exception:
        logger.exception("processors crashed")
    finally:
        intake.stop()
        if thread.ident is not None:
            thread.join(60)
        if failed.is_set() or thread.is_alive():
            code = 1
        # faust has already stopped and committed by now, but after a crash it can leave
        # a non-daemon consumer thread behind that keeps the process alive forever; a
        # supervisor must see the exit to restart us.
        logging.shutdown()
        os._exit(code)


class _BoundedWorker(Worker):
    """faust's worker with its stop bounded. With Kafka gone, faust and the intake wait
    for commits and acknowledgements that cannot come, and a supervisor would have to
    SIGKILL us; past STOP_GRACE_S we exit 1 instead. Nothing is lost by it: what was not
    committed is read again by the next worker."""

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if not self._signal_stop_time:
            watchdog = threading.Timer(STOP_GRACE_S, _give_up)
            watchdog.daemon = True
            watchdog.start()
        super()._schedule_shutdown(signal)


def _give_up() -> None:
    logger.error(
        "processors did not stop within %.0f s of the stop request (is Kafka reachable?); "
        "exiting without the last commits: those records will be read again",
        STOP_GRACE_S,
    )
    logging.shutdown()
    os._exit(1)


def _run_intake(intake: ConsumerRuntime, failed: threading.Event) -> None:
    try:
        intake.run()
    except Exception:
        logger.exception("intake crashed; stopping the worker")
        failed.set()
        os.kill(os.getpid(), signal.SIGTERM)  # faust stops, run() exits non-zero
