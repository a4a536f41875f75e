"""The faust application and the topics its agents read and write.

One app per deployment (its id carries the topic prefix), agents registered by
the modules in this package. Agents run with concurrency 1: faust can commit
past an in-flight event with more (faust-streaming issue 606). The raw topics are
read by the intake (processors/intake.py), outside faust, for throughput.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from contract.kafka import faust_credentials
from contract.settings import Settings
from contract.topics import Topic, topic_name


@dataclass(frozen=True)
class Topics:
    transitions: faust.TopicT
    alerts: faust.TopicT
    metrics_delivery: faust.TopicT
    metrics_calls: faust.TopicT


def app_id(settings: Settings) -> str:
    """The faust app's id, which is also its consumer group (of the transitions topic)."""
    return f"{settings.topic_prefix}switchboard-processors"


def create_app(settings: Settings) -> tuple[faust.App, Topics]:
    app = faust.App(
        app_id(settings),
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=faust_credentials(settings),
        store="memory://",  # tables are rebuilt from their changelog topics at start
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        processing_guarantee="at_least_once",
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        # faust binds its web server even when disabled; keep it on loopback
        web_enabled=False,
        web_host="127.0.0.1",
        web_port=settings.process_web_port,
        stream_buffer_maxsize=8192,
        # a killed worker's partitions wait this long for another (or its restart)
        broker_session_timeout=settings.process_session_timeout_s,
        broker_heartbeat_interval=settings.process_session_timeout_s / 4,
    )

    def topic(t: Topic) -> faust.TopicT:
        return app.topic(
            topic_name(t, settings.topic_prefix),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    topics = Topics(
        transitions=topic(Topic.TRANSITIONS),
        alerts=topic(Topic.ALERTS),
        metrics_delivery=topic(Topic.METRICS_DELIVERY),
        metrics_calls=topic(Topic.METRICS_CALLS),
    )
    return app, topics
