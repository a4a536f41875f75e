"""Kafka client configuration and topic set-up, converted from `Settings` in one place."""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from contract.errors import ConfigurationError, ServiceUnavailable
from contract.settings import Settings
from contract.topics import Topic, topic_name

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

logger = logging.getLogger(__name__)


class RepeatFilter(logging.Filter):
    """One line per client and facility per `every_s`, the next one saying how many
    were held back. With a broker down, librdkafka reports each reconnect (up to 20 a
    second per client); the first line says what is wrong, the rest only bury it."""

    def __init__(self, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self._last: dict[tuple[object, ...], float] = {}
        self._held: dict[tuple[object, ...], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # confluent-kafka logs ("%s [%s] %s", facility, client name, message)
        args = record.args if isinstance(record.args, tuple) else ()
        key = (record.levelno, *args[:2])
        now = self.clock()
        if now - self._last.get(key, now - self.every_s) < self.every_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it held back)"
        return True


# librdkafka's own log lines, through Python logging rather than raw stderr
rdkafka_logger = logging.getLogger("librdkafka")
rdkafka_logger.addFilter(RepeatFilter())

# Compacted: a subscriber joining late still finds every alert id once.
_TOPIC_CONFIG: dict[Topic, dict[str, str]] = {
    Topic.ALERTS: {"cleanup.policy": "compact,delete", "retention.ms": str(30 * 86400_000)},
    # the processors rebuild per-SID state from it: only the latest record per key matters
    Topic.SID_STATE: {"cleanup.policy": "compact"},
    Topic.SILENCES: {"cleanup.policy": "compact"},
    Topic.RECONCILE_CHECKS: {"cleanup.policy": "compact"},
}


def client_config(settings: Settings) -> dict[str, Any]:
    """What every librdkafka client of ours starts from: where Kafka is, how to prove
    who we are to it, and where its log lines go."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol.value,
        "logger": rdkafka_logger,
    }
    if settings.kafka_security_protocol.sasl:
        assert settings.kafka_password is not None  # Settings checked it
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism.value
        config["sasl.username"] = settings.kafka_username
        config["sasl.password"] = settings.kafka_password.get_secret_value()
    if settings.kafka_security_protocol.tls:
        # "probe": the system's authorities, as Python's default context uses; the wheels'
        # own OpenSSL would look in its build directory instead
        config["ssl.ca.location"] = str(settings.kafka_ca_file or "probe")
        if settings.kafka_cert_file is not None:
            config["ssl.certificate.location"] = str(settings.kafka_cert_file)
            config["ssl.key.location"] = str(settings.kafka_key_file)
    return config


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """faust's `broker_credentials` (aiokafka underneath) from the same settings."""
    import faust  # here: the edge and the sink import this module and never run faust

    protocol = settings.kafka_security_protocol
    context = None
    if protocol.tls:
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ca_file) if settings.kafka_ca_file else None
        )
        if settings.kafka_cert_file is not None:
            context.load_cert_chain(settings.kafka_cert_file, settings.kafka_key_file)
    if protocol.sasl:
        assert settings.kafka_password is not None  # Settings checked it
        return faust.SASLCredentials(
            username=settings.kafka_username,
            password=settings.kafka_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism.value,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    return {
        **client_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.producer_linger_ms,
        "compression.type": "lz4",
        "message.timeout.ms": 30_000,
        "socket.connection.setup.timeout.ms": 5_000,
        **extra,
    }


def consumer_config(settings: Settings, group: str, **extra: Any) -> dict[str, Any]:
    return {
        **client_config(settings),
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        **extra,
    }


def sink_consumer_config(settings: Settings) -> dict[str, Any]:
    """What the sink's consumers add to `consumer_config`."""
    return {
        # a killed sink that is not restarted has its partitions moved on after this
        "session.timeout.ms": settings.sink_session_timeout_ms,
        # librdkafka's 1 MiB per partition per fetch held the writer to about 170,000
        # records/s, waiting on the broker; 10 MiB lets one fetch fill most of a batch
        # (bench/sink: consume alone then runs at 500,000/s+).
        "max.partition.fetch.bytes": 10 * 1024 * 1024,
        "queued.min.messages": 200_000,
    }


def admin(settings: Settings, **extra: Any) -> AdminClient:
    return AdminClient(client_config(settings) | extra)


# What librdkafka says when a file it was given is unusable, and whose file it is.
_FILE_SETTINGS = {
    "ssl.ca.location": "SWITCHBOARD_KAFKA_CA_FILE",
    "ssl.certificate.location": "SWITCHBOARD_KAFKA_CERT_FILE",
    "ssl.key.location": "SWITCHBOARD_KAFKA_KEY_FILE",
}


# Our side rejecting the broker's certificate, or the broker rejecting ours (mutual TLS;
# with TLS 1.3 that comes after the handshake, as an alert on the first read).
_TLS_REFUSALS = (
    "certificate verify failed",
    "alert bad certificate",
    "alert certificate required",
    "alert unknown ca",
)


def refusal(settings: Settings, error: KafkaError) -> str | None:
    """What to check when the broker refused who we are (no retry helps), else None.
    librdkafka's reason never holds the password; it goes into the message as it is."""
    reason = error.str()
    if error.code() == KafkaError._AUTHENTICATION:
        return (
            f"SASL authentication failed ({settings.kafka_sasl_mechanism.value} as user "
            f"{settings.kafka_username!r}): check SWITCHBOARD_KAFKA_USERNAME / "
            f"SWITCHBOARD_KAFKA_PASSWORD (and SWITCHBOARD_KAFKA_SASL_MECHANISM); {reason}"
        )
    if error.code() == KafkaError._SSL or any(text in reason for text in _TLS_REFUSALS):
        return (
            "TLS handshake failed: check SWITCHBOARD_KAFKA_CA_FILE (and, for mutual TLS, "
            f"SWITCHBOARD_KAFKA_CERT_FILE / SWITCHBOARD_KAFKA_KEY_FILE); {reason}"
        )
    return None


def wait_for_kafka(settings: Settings, *, attempts: int = 30, delay_s: float = 1.0) -> None:
    """Bounded start-up check: fail with what to start rather than hang. A broker that
    refuses our credentials or certificates fails it at once, naming the settings: every
    retry would be refused the same way, for minutes."""
    errors: list[KafkaError] = []  # librdkafka's error_cb, served by poll()
    try:
        client = admin(settings, error_cb=errors.append)
    except KafkaException as exc:  # a file librdkafka cannot read or parse
        reason = str(exc.args[0].str())
        named = " / ".join(n for key, n in _FILE_SETTINGS.items() if key in reason)
        raise ConfigurationError(
            f"Kafka client not created: check {named or 'the SWITCHBOARD_KAFKA_* settings'}; "
            f"{reason}"
        ) from None
    for attempt in range(1, attempts + 1):
        try:
            client.list_topics(timeout=2.0)
            return
        except KafkaException as exc:
            client.poll(0)
            for error in [exc.args[0], *errors]:
                if (problem := refusal(settings, error)) is not None:
                    raise ConfigurationError(problem) from None
            errors.clear()
            logger.info(
                "waiting for Kafka at %s (%d/%d): %s",
                settings.kafka_bootstrap,
                attempt,
                attempts,
                exc,
            )
            if attempt < attempts:
                time.sleep(delay_s)
    protocol = settings.kafka_security_protocol.value
    raise ServiceUnavailable(
        f"Kafka at {settings.kafka_bootstrap} did not answer after {attempts} tries; "
        "start it with `make broker` (or `docker compose up kafka`) "
        "or set SWITCHBOARD_KAFKA_BOOTSTRAP (and SWITCHBOARD_KAFKA_SECURITY_PROTOCOL, "
        f"now {protocol}, to the listener's)"
    )


def min_insync_config(settings: Settings) -> dict[str, str]:
    """The topic config that applies SWITCHBOARD_TOPIC_MIN_INSYNC_REPLICAS."""
    if settings.topic_min_insync_replicas is None:
        return {}  # the broker's default
    return {"min.insync.replicas": str(settings.topic_min_insync_replicas)}


RAW_TOPICS = frozenset(
    {
        Topic.CALLBACKS_SMS,
        Topic.CALLBACKS_VOICE,
        Topic.CALLBACKS_RECORDING,
        Topic.CALLBACKS_TRANSCRIPTION,
        Topic.CALLBACKS_INBOUND_CALL,
    }
)


def retention_ms(settings: Settings, topic: Topic) -> int | None:
    """How long `topic` keeps a record (retention.ms), or None for a compacted topic,
    which keeps each key's latest record until a tombstone (`switchboard forget` writes
    them for the per-SID state)."""
    if _TOPIC_CONFIG.get(topic, {}).get("cleanup.policy") == "compact":
        return None
    if topic is Topic.ALERTS:  # compacted too, and no personal data but our own scopes
        return int(_TOPIC_CONFIG[topic]["retention.ms"])
    seconds = (
        settings.retention_raw_topics_s if topic in RAW_TOPICS else settings.retention_topics_s
    )
    return seconds * 1000


def topic_config(settings: Settings, topic: Topic) -> dict[str, str]:
    config = _TOPIC_CONFIG.get(topic, {}) | min_insync_config(settings)
    retention = retention_ms(settings, topic)
    if retention is not None:
        config["retention.ms"] = str(retention)
    return config


def ensure_topics(settings: Settings, topics: list[Topic] | None = None) -> None:
    """Create our topics with the configured partition count (faust won't create sources)
    and retention; a topic that exists with another retention gets the configured one."""
    client = admin(settings)
    wanted = topics or list(Topic)
    existing = set(client.list_topics(timeout=10).topics)
    new = [
        NewTopic(
            topic_name(t, settings.topic_prefix),
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication,
            config=topic_config(settings, t),
        )
        for t in wanted
        if topic_name(t, settings.topic_prefix) not in existing
    ]
    _align_retention(
        settings, client, [t for t in wanted if topic_name(t, settings.topic_prefix) in existing]
    )
    if not new:
        return
    for name, future in client.create_topics(new, operation_timeout=10).items():
        try:
            future.result()
            logger.info("created topic %s", name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    _wait_for_leaders(client, [t.topic for t in new])


def topic_retentions(settings: Settings, topics: list[Topic]) -> dict[Topic, int | None]:
    """The retention.ms each existing topic has on the broker (None: unlimited or absent)."""
    client = admin(settings)
    existing = set(client.list_topics(timeout=10).topics)
    found: dict[Topic, int | None] = {}
    resources = {
        t: ConfigResource(ConfigResource.Type.TOPIC, topic_name(t, settings.topic_prefix))
        for t in topics
        if topic_name(t, settings.topic_prefix) in existing
    }
    futures = client.describe_configs(list(resources.values()), request_timeout=10)
    by_name = {resource.name: config for resource, config in futures.items()}
    for topic, resource in resources.items():
        entry = by_name[resource.name].result().get("retention.ms")
        value = int(entry.value) if entry is not None and entry.value is not None else -1
        found[topic] = value if value >= 0 else None
    return found


def _align_retention(settings: Settings, client: AdminClient, topics: list[Topic]) -> None:
    """Existing topics whose retention.ms is not the configured one get it, with a log
    line: a changed SWITCHBOARD_RETENTION_* reaches topics made before it."""
    if not topics:
        return
    actual = topic_retentions(settings, topics)
    changes = []
    for topic in topics:
        wanted = retention_ms(settings, topic)
        if wanted is None or actual.get(topic) == wanted:
            continue
        name = topic_name(topic, settings.topic_prefix)
        logger.warning(
            "topic %s keeps records for %s ms, the settings say %d ms: altering it",
            name,
            actual.get(topic),
            wanted,
        )
        changes.append(
            ConfigResource(
                ConfigResource.Type.TOPIC,
                name,
                incremental_configs=[
                    ConfigEntry(
                        "retention.ms",
                        str(wanted),
                        incremental_operation=AlterConfigOpType.SET,
                    )
                ],
            )
        )
    if changes:
        for future in client.incremental_alter_configs(changes).values():
            future.result()


def _wait_for_leaders(client: AdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    """Until every partition of `names` has a leader: a topic whose creation was just
    acknowledged can still answer NOT_LEADER_FOR_PARTITION to the stage that reads it
    first (the processors' start-up replay did)."""
    deadline = time.monotonic() + timeout_s
    while True:
        topics = client.list_topics(timeout=10).topics
        pending = [
            name
            for name in names
            if name not in topics
            or topics[name].error is not None
            or not topics[name].partitions
            or any(p.leader < 0 for p in topics[name].partitions.values())
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise ServiceUnavailable(
                f"topics {pending} have no partition leader after {timeout_s:.0f} s"
            )
        time.sleep(0.1)
