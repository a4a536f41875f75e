"""The sink process: ClickHouse writers and the SMS dispatch, until SIGTERM.

In embedded mode this process owns the chDB store, so it is also the one that
answers queries.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

import uvicorn
from confluent_kafka import Producer
from prometheus_client import start_http_server

from contract.alerts import Alert
from contract.kafka import ensure_topics, producer_config, wait_for_kafka
from contract.settings import Settings
from contract.templates import check_templates
from contract.topics import Topic
from contract.windows import CallWindow, DeliveryWindow
from query.api import create_api
from query.auth import resolve_token, token_file
from query.reports import Filters
from runtime.consumer import ConsumerRuntime
from sinks.alerts import Channel, alert_channel_consumer, alert_dispatch_consumer
from sinks.clickhouse.rows import dead_letter_row, event_row, record_row
from sinks.clickhouse.schema import migrate
from sinks.clickhouse.store import Store
from sinks.clickhouse.writer import RowMapper, table_writer
from sinks.privacy import prune_exports
from sinks.signalwire.enrich import enricher
from sinks.signalwire.forwards import forwards_consumer

logger = logging.getLogger(__name__)

EXPORTS_PRUNE_EVERY_S = 3600.0  # export files older than their retention are removed


def workers(settings: Settings, store: Store, producer: Producer) -> list[ConsumerRuntime]:
    """Every consumer of the sink process, each on its own thread and consumer group,
    all sharing the one Store: the ClickHouse writers (dead letters too), failure
    enrichment, the SMS forwards, the alert dispatch and the alert's webhook and Slack
    channels when set."""
    group = f"{settings.topic_prefix}switchboard-sink"

    def writer(
        name: str, topic: Topic | tuple[Topic, ...], mapper: RowMapper, *, figures: bool = False
    ) -> ConsumerRuntime:
        """`figures`: window figures, published every `metrics_interval_s` and read by
        people, not waited on. Batched by age alone, they cost a part per age rather
        than one per burst."""
        return table_writer(
            settings,
            store,
            topic,
            group=f"switchboard-sink-{name}",
            name=name,
            mapper=mapper,
            age_s=settings.sink_metrics_batch_seconds if figures else None,
            close_early=not figures,
        )

    channels = [
        alert_channel_consumer(
            settings, store, producer, channel, group=f"{group}-alert-{channel.value}"
        )
        for channel, wanted in (
            (Channel.WEBHOOK, settings.alert_webhook_url),
            (Channel.SLACK, settings.alert_slack_url),
        )
        if wanted
    ]
    return channels + [
        writer("events", Topic.EVENTS, event_row),
        writer(
            "delivery-windows",
            Topic.METRICS_DELIVERY,
            record_row("delivery_windows", DeliveryWindow),
            figures=True,
        ),
        writer(
            "call-windows",
            Topic.METRICS_CALLS,
            record_row("call_windows", CallWindow),
            figures=True,
        ),
        writer("alerts", Topic.ALERTS, record_row("alerts", Alert)),
        writer(
            "dead-letters",
            (Topic.CALLBACKS_DEAD_LETTER, Topic.FORWARDS_DEAD_LETTER),
            dead_letter_row(settings.topic_prefix),
        ),
        enricher(settings, store, group=f"{group}-enrich"),
        forwards_consumer(settings, store, producer, group=f"{group}-forwards"),
        alert_dispatch_consumer(settings, store, producer, group=f"{group}-alert-dispatch"),
    ]


def run(settings: Settings, metrics_port: int | None = None) -> None:
    check_templates(settings)  # the alerts' SMS and Slack texts are filled here
    wait_for_kafka(settings)
    ensure_topics(settings)
    store = Store.connect(settings)
    migrate(store, settings)
    prune_exports(settings)
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1")
    producer = Producer(producer_config(settings))  # dead-letter records
    writers = workers(settings, store, producer)
    api = _api_server(settings, store)
    stopping = threading.Event()

    def stop(reason: str) -> None:
        if not stopping.is_set():
            logger.info("sink stopping (%s): finishing batches", reason)
        stopping.set()
        for w in writers:
            w.stop()
        api.should_exit = True

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop(f"received {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = [threading.Thread(target=_logged(w), name=f"sink-{w.name}") for w in writers]
    threads.append(threading.Thread(target=api.run, name="query-api"))
    for t in threads:
        t.start()
    logger.info("sink running: ClickHouse %s, database %s", store.dsn, store.database)
    failed = False
    pruned_at = time.monotonic()
    while any(t.is_alive() for t in threads):
        if time.monotonic() - pruned_at > EXPORTS_PRUNE_EVERY_S:
            pruned_at = time.monotonic()
            prune_exports(settings)
        # A worker that ends on its own leaves its topic unread: stop the whole sink, so
        # that the exit code tells a supervisor to restart it.
        dead = [t.name for t in threads if not t.is_alive()]
        if dead and not stopping.is_set():
            failed = True
            logger.error("sink worker %s stopped unexpectedly", ", ".join(dead))
            stop("a worker stopped")
        time.sleep(0.5)
    producer.flush(10)
    store.close()
    logger.info("sink stopped")
    if failed:
        raise SystemExit(1)


def _logged(worker: ConsumerRuntime) -> Callable[[], None]:
    def run() -> None:
        try:
            worker.run()
        except Exception:
            logger.exception("sink worker %s crashed", worker.name)

    return run


def _api_server(settings: Settings, store: Store) -> uvicorn.Server:
    token, generated = resolve_token(settings)
    if generated:
        logger.warning("generated an API token; read it from %s", token_file(settings))
    logger.info("query API on http://%s:%d (token required)", settings.api_host, settings.api_port)
    config = uvicorn.Config(
        create_api(
            store,
            token,
            defaults=Filters.from_settings(settings),
            topic_prefix=settings.topic_prefix,
            settings=settings,
        ),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
    )
    return uvicorn.Server(config)
