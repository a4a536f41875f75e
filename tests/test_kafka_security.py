"""Kafka security: the settings become librdkafka's keys and faust's credentials alike,
and the whole pipeline runs over a SASL_SSL listener (tests/test_security.py has the
refused credentials and certificates)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faust
import pytest
import yaml
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]  # ships no types
from confluent_kafka.admin import ConfigResource, ResourceType
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from contract.errors import ConfigurationError
from contract.kafka import admin, client_config, ensure_topics, faust_credentials, wait_for_kafka
from contract.settings import Settings, load_settings
from contract.topics import Topic, topic_name
from processors.app import app_id
from switchboard.broker import LocalBroker
from switchboard.tls import Pem, issue, make_ca
from tests.faults.conftest import sms_callbacks, stored_sms
from tests.harness import (
    ROOT,
    Stage,
    chdb_rows,
    drained,
    group_lag,
    isolated_settings,
    post_form,
    secure_settings,
    wait_for,
)


@pytest.fixture(scope="module")
def client_pem(tmp_path_factory: pytest.TempPathFactory) -> Pem:
    directory = tmp_path_factory.mktemp("pem")
    return issue(make_ca(directory, "other-ca"), directory, "client", server=False)


def test_plaintext_adds_no_security_keys() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    config = client_config(settings)
    assert config["security.protocol"] == "PLAINTEXT"
    assert not [key for key in config if key.startswith(("sasl.", "ssl."))]
    assert faust_credentials(settings) is None


def test_sasl_ssl_gives_librdkafka_and_faust_the_same_identity(client_pem: Pem) -> None:
    settings = load_settings(
        _env_file=None,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_username="svc",
        kafka_password="s3cret-pw",
        kafka_ca_file=client_pem.cert,  # any readable PEM will do for the conversion
    )
    config = client_config(settings)
    assert {k: v for k, v in config.items() if k.startswith(("sasl.", "ssl.", "security."))} == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "s3cret-pw",
        "ssl.ca.location": str(client_pem.cert),
    }
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    auth = credentials_to_aiokafka_auth(credentials)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("svc", "s3cret-pw")
    assert "s3cret-pw" not in repr(settings) + repr(credentials)


def test_tls_without_a_ca_file_trusts_the_system_authorities(client_pem: Pem) -> None:
    settings = load_settings(
        _env_file=None,
        kafka_security_protocol="SSL",
        kafka_cert_file=client_pem.cert,
        kafka_key_file=client_pem.key,
    )
    config = client_config(settings)
    assert config["ssl.ca.location"] == "probe"
    assert config["ssl.certificate.location"] == str(client_pem.cert)
    assert config["ssl.key.location"] == str(client_pem.key)
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.context.cert_store_stats()["x509_ca"] > 0  # the system's


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "SWITCHBOARD_KAFKA_PASSWORD"),
        ({"kafka_username": "svc", "kafka_password": "pw"}, "does not use SASL"),
        ({"kafka_ca_file": "/nonexistent/ca.pem"}, "SWITCHBOARD_KAFKA_CA_FILE"),
        ({"kafka_security_protocol": "SSL", "kafka_key_file": __file__}, "_CERT_FILE"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "SWITCHBOARD_KAFKA_SASL_MECHANISM"),
        ({"topic_min_insync_replicas": 2}, "SWITCHBOARD_TOPIC_MIN_INSYNC_REPLICAS"),
    ],
)
def test_settings_that_do_not_fit_together_fail_by_name(
    given: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        load_settings(_env_file=None, **given)


@pytest.mark.kafka
def test_topics_carry_min_insync_replicas(secure_kafka: LocalBroker, tmp_path: Path) -> None:
    settings = secure_settings(secure_kafka, tmp_path, topic_min_insync_replicas=1)
    ensure_topics(settings, [Topic.ALERTS])
    resource = ConfigResource(ResourceType.TOPIC, topic_name(Topic.ALERTS, settings.topic_prefix))
    client = admin(settings)  # kept: a destroyed client fails its futures
    [future] = client.describe_configs([resource]).values()
    entry = future.result()["min.insync.replicas"]
    assert entry.value == "1"
    assert entry.source == 1  # DYNAMIC_TOPIC_CONFIG: set on the topic, not the broker default


@pytest.mark.kafka
def test_mutual_tls_certificates_reach_both_clients(
    secure_kafka: LocalBroker, tmp_path: Path, client_pem: Pem
) -> None:
    """On the listener that requires a client certificate, one signed by the broker's CA
    lets librdkafka and aiokafka (faust's credentials) in; another CA's is refused."""
    mine = secure_kafka.issue_client_certificate(f"client-{time.monotonic_ns()}")
    settings = isolated_settings(
        f"127.0.0.1:{secure_kafka.mtls_port}",
        tmp_path,
        kafka_security_protocol="SSL",
        kafka_ca_file=secure_kafka.ca,
        kafka_cert_file=mine.cert,
        kafka_key_file=mine.key,
    )
    wait_for_kafka(settings, attempts=3)

    async def faust_side() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            **credentials_to_aiokafka_auth(faust_credentials(settings)),
        )
        await producer.start()
        await producer.stop()
        await asyncio.sleep(0.5)  # TLS connections close after stop() returns

    asyncio.run(faust_side())
    foreign = settings.model_copy(
        update={"kafka_cert_file": client_pem.cert, "kafka_key_file": client_pem.key}
    )
    with pytest.raises(ConfigurationError, match="SWITCHBOARD_KAFKA_CERT_FILE"):
        wait_for_kafka(foreign, attempts=3)


@pytest.mark.kafka
@pytest.mark.slow
def test_the_pipeline_over_sasl_ssl_stores_every_callback(
    secure_kafka: LocalBroker, tmp_path: Path
) -> None:
    """Edge, processors (librdkafka intake and faust's aiokafka) and sink, each with
    another SASL mechanism, over the TLS listener: every acknowledged callback lands in
    ClickHouse, and the faust agent's windows too."""
    settings = secure_settings(
        secure_kafka, tmp_path, clickhouse_database="switchboard", metrics_interval_s=1.0
    )
    ensure_topics(settings)  # before the edge's first record could create one by default
    stages = {
        name: Stage(name, settings.model_copy(update={"kafka_sasl_mechanism": mech}), tmp_path)
        for name, mech in (
            ("sink", "SCRAM-SHA-256"),
            ("process", "SCRAM-SHA-512"),
            ("ingest", "PLAIN"),
        )
    }
    for stage in stages.values():
        stage.start()
    edge = f"http://127.0.0.1:{settings.ingest_port}/callbacks/sms?campaign=secure"
    callbacks = sms_callbacks(100)
    try:
        wait_for(lambda: post_form(edge, callbacks[0]) == 204, timeout=90, what="the edge")
        with ThreadPoolExecutor(4) as pool:
            answers = [204, *pool.map(lambda c: post_form(edge, c), callbacks[1:])]
        assert answers == [204] * len(callbacks)
        wait_for(lambda: drained(settings), timeout=120, interval=1, what="the stages to drain")
        # faust's agent has applied every transition, published its windows (every 1 s),
        # and the sink has written and committed them
        for group, topic in (
            (app_id(settings), Topic.TRANSITIONS),
            (f"{settings.topic_prefix}switchboard-sink-delivery-windows", Topic.METRICS_DELIVERY),
        ):
            wait_for(
                lambda g=group, t=topic: group_lag(settings, g, t) == 0,  # type: ignore[misc]
                timeout=60,
                interval=1,
                what=f"{group} to commit all of {topic}",
            )
            time.sleep(2 * settings.metrics_interval_s)
        for name in ("ingest", "process", "sink"):
            assert stages[name].terminate() == 0, stages[name].log()[-3000:]
    finally:
        for stage in stages.values():
            if stage.alive():
                stage.kill()
    # the statusless ones among them are dead letters (tests/faults/conftest.py)
    sent = {(c["MessageSid"], c["MessageStatus"]) for c in callbacks if "MessageStatus" in c}
    assert stored_sms(settings) == sent
    [delivered] = chdb_rows(
        settings.clickhouse_dsn,
        settings.clickhouse_database,
        "SELECT max(delivered) AS n FROM {db}.delivery_windows FINAL "
        "WHERE scope = 'campaign:secure'",
    )
    assert delivered["n"] == 100
    logs = "".join(stage.log() for stage in stages.values())
    assert secure_kafka.password() not in logs


def test_readme_and_compose_name_every_kafka_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    compose = (ROOT / "docker-compose.yml").read_text()
    assert yaml.safe_load(compose)["services"]["ingest"]["environment"]  # still valid
    for field in Settings.model_fields:
        if field.startswith(("kafka_", "topic_")):
            assert f"`SWITCHBOARD_{field.upper()}`" in readme, field
        if field.startswith("kafka_") and field != "kafka_bootstrap":
            assert f"# SWITCHBOARD_{field.upper()}:" in compose, field
