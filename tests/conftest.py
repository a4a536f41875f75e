"""Real services, once per test session: one Apache Kafka broker and one chDB path.

Each test gets its own topic prefix and ClickHouse database, so tests never see
each other's data. chDB allows one path per process, hence one path per session.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.kafka import ensure_topics
from contract.settings import Settings
from sinks.clickhouse.schema import migrate
from sinks.clickhouse.store import Store
from switchboard.broker import LocalBroker, free_port, kafka_version
from tests.fake_signalwire import FakeSignalWire
from tests.harness import isolated_settings

logger = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"), port=free_port())
    broker.start()
    print(f"\nApache Kafka {kafka_version()} (KRaft) on {broker.bootstrap}")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A second broker, listening with SASL_SSL only: started by the tests that ask for it."""
    broker = LocalBroker(
        tmp_path_factory.mktemp("kafka-secure"), port=free_port(), heap="384m", secure=True
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def settings(kafka: LocalBroker, tmp_path: Path, chdb_path: Path) -> Settings:
    return isolated_settings(kafka.bootstrap, tmp_path, clickhouse_url=f"chdb://{chdb_path}")


@pytest.fixture
def topics(settings: Settings) -> Settings:
    ensure_topics(settings)
    return settings


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """The test's own ClickHouse database in the session's chDB path, schema applied."""
    store = Store.connect(settings)
    migrate(store)
    try:
        yield store
    finally:
        store.command(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")


@pytest.fixture(scope="session")
def _fake_signalwire() -> Iterator[FakeSignalWire]:
    with FakeSignalWire() as server:
        yield server


@pytest.fixture
def fake(_fake_signalwire: FakeSignalWire) -> FakeSignalWire:
    """The fake SignalWire REST API, its records and failures cleared for each test."""
    _fake_signalwire.reset()
    return _fake_signalwire
