"""The sink process: ClickHouse writers and the SMS dispatch, until SIGTERM.

In embedded mode this process owns the chDB store, so it is also the one that
answers queries.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import uvicorn
from prometheus_client import start_http_server

from contract.kafka import ensure_topics, wait_for_kafka
from contract.settings import Settings
from contract.topics import Topic, topic_name
from sinks.api.app import create_api
from sinks.api.auth import resolve_token, token_file
from sinks.clickhouse.reports import Filters
from sinks.clickhouse.rows import event_rows
from sinks.clickhouse.schema import migrate
from sinks.clickhouse.store import Store
from sinks.clickhouse.writer import BatchWriter

logger = logging.getLogger(__name__)


def run(settings: Settings, metrics_port: int | None = None) -> None:
    wait_for_kafka(settings)
    ensure_topics(settings)
    store = Store.connect(settings)
    migrate(store)
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1")
    group = f"{settings.topic_prefix}switchboard-sink"
    writers = [
        BatchWriter(
            settings,
            store,
            group=f"{group}-events",
            name="events",
            topics=[topic_name(Topic.EVENTS, settings.topic_prefix)],
            mapper=event_rows,
        ),
    ]
    threads = [threading.Thread(target=w.run, name=f"writer-{w.name}") for w in writers]
    api = _api_server(settings, store)
    threads.append(threading.Thread(target=api.run, name="query-api"))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("sink received %s: finishing batches", signal.Signals(signum).name)
        for w in writers:
            w.stop()
        api.should_exit = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for t in threads:
        t.start()
    logger.info("sink running: ClickHouse %s, database %s", store.dsn, store.database)
    for t in threads:
        while t.is_alive():
            t.join(0.5)
    store.close()
    logger.info("sink stopped")


def _api_server(settings: Settings, store: Store) -> uvicorn.Server:
    token, generated = resolve_token(settings)
    if generated:
        logger.warning("generated an API token; read it from %s", token_file(settings))
    logger.info("query API on http://%s:%d (token required)", settings.api_host, settings.api_port)
    config = uvicorn.Config(
        create_api(
            store,
            token,
            defaults=Filters(
                unconfirmed_after_s=settings.unconfirmed_after_s, mos_floor=settings.mos_floor
            ),
        ),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
    )
    return uvicorn.Server(config)
