"""One frozen settings object per process, read from the environment and `.env`.

Every knob of Switchboard is here, so a window size or a threshold is changed in
one place. Our own variables start with SWITCHBOARD_; SignalWire credentials keep
the provider's conventional names.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contract.errors import ConfigurationError


class KafkaSecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def tls(self) -> bool:
        return self in (KafkaSecurityProtocol.SSL, KafkaSecurityProtocol.SASL_SSL)

    @property
    def sasl(self) -> bool:
        return self in (KafkaSecurityProtocol.SASL_PLAINTEXT, KafkaSecurityProtocol.SASL_SSL)


class SaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


class AccountSettings(BaseModel):
    """What one SignalWire project (or Twilio account) has of its own; None: the default's.

    The keys of `SWITCHBOARD_ACCOUNTS` are AccountSids (a SignalWire project id), the
    callbacks' `AccountSid`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    signing_key: SecretStr | None = None
    signalwire_project_id: str | None = None
    signalwire_token: SecretStr | None = None
    signalwire_space_url: str | None = None
    forward_from: str | None = None
    forward_to: str | None = None
    alert_to: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    # --- Kafka ---
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    topic_partitions: int = Field(4, ge=1, description="partitions of every topic we create")
    topic_replication: int = Field(1, ge=1)
    topic_min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="min.insync.replicas of the topics we create (at most the replication); "
        "the broker's default when unset",
    )
    # Security: every client (librdkafka and faust's aiokafka) gets these from
    # contract/kafka.py. CA unset with TLS: the system's certificate authorities.
    kafka_security_protocol: KafkaSecurityProtocol = KafkaSecurityProtocol.PLAINTEXT
    kafka_sasl_mechanism: SaslMechanism = SaslMechanism.PLAIN
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    kafka_ca_file: FilePath | None = None
    kafka_cert_file: FilePath | None = Field(None, description="client certificate (mutual TLS)")
    kafka_key_file: FilePath | None = Field(None, description="its private key (unencrypted PEM)")
    instance_id: str = Field(
        "",
        description="this stage instance's stable name in its consumer groups (static "
        "membership: a restarted stage takes its partitions back at once); the host name "
        "when empty; distinct per instance when several of one stage share a host",
    )
    record_max_attempts: int = Field(
        5,
        ge=1,
        description="tries of a record whose handling raises before it is dead-lettered",
    )

    # --- storage ---
    data_dir: Path = Path("./data")
    clickhouse_url: str | None = Field(
        None, description="chdb:///path (embedded) or http(s)://user:pass@host:port/db"
    )
    clickhouse_database: str = "switchboard"
    # A ClickHouse cluster: replicated tables ON CLUSTER, Distributed tables over them
    # under the usual names (sinks/clickhouse/schema.py)
    clickhouse_cluster: str | None = Field(
        None,
        description="the cluster's name in the servers' remote_servers; unset: one server",
    )

    # --- the HTTP edge ---
    ingest_host: str = "127.0.0.1"
    ingest_port: int = Field(8080, ge=0, le=65535)
    ingest_workers: int = Field(1, ge=1)
    signing_key: SecretStr | None = None
    public_url: str | None = None
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    produce_timeout_s: float = Field(3.0, gt=0, lt=5.0, description="under the provider's 5 s")
    retry_after_s: int = Field(5, ge=1)
    # 1 ms: the edge's answer waits for the acknowledgement, so linger is latency; at
    # 0 librdkafka sends tiny batches and costs more CPU per callback (bench/ingest).
    producer_linger_ms: int = Field(1, ge=0)

    # --- processors ---
    process_web_port: int = Field(6066, ge=0, le=65535)
    window_tumbling_s: int = Field(60, ge=1)
    # NoDecode: read as comma-separated, not JSON, from the environment
    window_hopping_s: Annotated[tuple[int, ...], NoDecode] = (900, 3600)
    window_hop_s: int = Field(60, ge=1)
    window_expires_s: int = Field(7200, ge=60)
    unconfirmed_after_s: int = Field(
        900, ge=1, description="a message still at 'sent' this long after is unconfirmed"
    )
    sms_failure_threshold: int = Field(100, ge=1)
    call_failure_threshold: int = Field(100, ge=1)
    failure_rate_pct: float = Field(20.0, gt=0, le=100)
    failure_rate_min_volume: int = Field(200, ge=1)
    alert_hysteresis_pct: float = Field(
        20.0,
        ge=0,
        lt=100,
        description="a firing count or rate alert resolves once its windows are this "
        "percentage under the threshold, so a figure hovering at the line does not flap",
    )
    mos_resolve_margin: float = Field(
        0.2, ge=0, description="a low-MOS alert resolves once the mean is this far above the floor"
    )
    alert_repeat_s: int = Field(
        4 * 3600, ge=0, description="a firing alert is notified again this often (0: never)"
    )
    alert_every_failed_calls: int = Field(
        0,
        ge=0,
        description="the seed's rule beside the windows: an alert at every N failed calls of "
        "the account since the last one, however far apart (0: off)",
    )
    mos_floor: float = Field(3.5, ge=1, le=5)
    mos_min_calls: int = Field(20, ge=1)
    alert_windows_s: Annotated[tuple[int, ...], NoDecode] = Field(
        (900,),
        min_length=1,
        description="window sizes whose figures raise alerts (of the sizes above)",
    )
    metrics_interval_s: float = Field(5.0, gt=0, description="changed windows published this often")
    process_batch_max: int = Field(5000, ge=1, description="raw callbacks per intake batch")
    process_batch_wait_s: float = Field(0.1, gt=0, description="longest wait to fill a batch")
    state_ttl_s: int = Field(
        2 * 86400, ge=60, description="per-SID state is forgotten this long after its last change"
    )
    # A SID in a final status (delivered, failed, completed, ...) only hears again from
    # provider retries, which come within minutes: kept 2 days like the others, the
    # states of a campaign's finished messages were most of the processors' memory.
    final_state_ttl_s: int = Field(
        3600, ge=60, description="per-SID state in a final status is forgotten this long after"
    )
    process_session_timeout_s: float = Field(
        10.0, ge=6, le=300, description="a dead worker's partitions move on after this long"
    )

    # --- sinks ---
    sink_batch_rows: int = Field(20_000, ge=1)
    sink_batch_seconds: float = Field(0.5, gt=0)
    sink_metrics_batch_seconds: float = Field(
        5.0, gt=0, description="age of the window figures' batches (no early close)"
    )
    sink_retry_max_s: float = Field(30.0, gt=0)
    api_host: str = "127.0.0.1"
    api_port: int = Field(8081, ge=0, le=65535)
    api_token: SecretStr | None = None
    exports_dir: Path | None = None
    sink_session_timeout_ms: int = Field(
        45_000,
        ge=6_000,
        description="how soon the group gives a dead sink's partitions to another consumer",
    )
    enrich_concurrency: int = Field(
        4, ge=1, description="SignalWire message fetches in flight for failure enrichment"
    )
    rest_max_attempts: int = Field(
        8, ge=1, description="tries of one SignalWire REST call on 429, 5xx or no answer"
    )
    rest_retry_base_s: float = Field(
        0.5, gt=0, description="first backoff between tries; doubles, capped by sink_retry_max_s"
    )
    alert_report_wait_s: float = Field(
        30.0, ge=0, description="how long an alert's CSV waits for ClickHouse to hold its count"
    )
    alert_template: str = (
        "Switchboard alert: {type} for {scope}: {value:g} (threshold {threshold:g}) "
        "between {window_start} and {window_end} UTC. Report: {report}"
    )

    # --- reconcile (issue #23): stuck SIDs checked against the provider's REST API ---
    reconcile_sms_after_s: float = Field(
        600.0, ge=0, description="a message not final this long after its last change is stuck"
    )
    reconcile_call_after_s: float = Field(
        4 * 3600.0, ge=0, description="a call not final this long after its last change is stuck"
    )
    reconcile_refetch_s: float = Field(
        3600.0, ge=0, description="a stuck SID is fetched again no sooner than this"
    )
    reconcile_give_up_s: float = Field(
        86400.0, gt=0, description="a SID not final this long after its last change is left be"
    )
    reconcile_rate: float = Field(
        10.0, gt=0, description="REST requests per second the reconcile stage makes, at most"
    )
    reconcile_concurrency: int = Field(4, ge=1, description="REST requests in flight")
    reconcile_interval_s: float = Field(
        60.0, gt=0, description="how often the running stage looks for stuck SIDs"
    )
    reconcile_max_retry_after_s: float = Field(
        300.0, gt=0, description="the longest Retry-After the stage waits out"
    )
    # --- privacy: retention, redaction, erasure (contract/privacy.py) ---
    # Retention per store. Topics get retention.ms at creation, and a topic that exists
    # with another one is altered at start (the stages log it).
    retention_raw_topics_s: int = Field(
        7 * 86400, ge=3600, description="raw callbacks (callbacks.<kind>) are kept this long"
    )
    retention_topics_s: int = Field(
        7 * 86400,
        ge=3600,
        description="events, forwards, window figures, transitions and dead letters topics",
    )
    retention_events_days: int = Field(
        365,
        ge=1,
        description="ClickHouse rows about callbacks (event tables, failed_messages, forwards, "
        "dead_letters) are deleted this long after they were received",
    )
    retention_aggregates_days: int = Field(
        730, ge=1, description="window figures and alerts in ClickHouse"
    )
    retention_exports_days: int = Field(
        30, ge=1, description="CSV files in the exports directory are removed after this long"
    )
    retention_texts_days: int = Field(
        0,
        ge=0,
        description="message bodies and transcription texts in ClickHouse: 0, never stored; "
        "otherwise kept this many days (a column TTL)",
    )
    hash_numbers: bool = Field(
        False,
        description="store phone numbers in ClickHouse as an HMAC (keyed by number_hash_key) "
        "plus their last digits, so per-number reports still group",
    )
    number_hash_key: SecretStr | None = Field(None, description="the HMAC key of hash_numbers")

    # --- SignalWire (provider's own variable names) ---
    signalwire_project_id: str | None = Field(
        None, validation_alias=AliasChoices("SIGNALWIRE_PROJECT_ID", "signalwire_project_id")
    )
    signalwire_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SIGNALWIRE_TOKEN", "signalwire_token")
    )
    signalwire_space_url: str | None = Field(
        None, validation_alias=AliasChoices("SIGNALWIRE_SPACE_URL", "signalwire_space_url")
    )
    signalwire_api_base: str | None = Field(
        None, description="override the REST base URL (tests point it at a local fake)"
    )
    forward_from: str | None = None
    forward_to: str | None = None
    alert_to: str | None = None
    alert_webhook_url: str | None = Field(
        None, description="POST each alert notification here, signed per Standard Webhooks"
    )
    alert_webhook_secret: SecretStr | None = Field(
        None, description="the webhook's signing secret, whsec_<base64>; unset: unsigned"
    )
    alert_slack_url: SecretStr | None = Field(
        None, description="a Slack incoming-webhook URL for alert notifications"
    )
    alert_resolved_template: str = (
        "Switchboard: {type} for {scope} resolved: {value:g} (threshold {threshold:g}) "
        "between {window_start} and {window_end} UTC."
    )
    recording_template: str = (
        'You have received a voicemail. Listen to the recording here: "{recording_url}". '
        "The Call SID is {call_sid}"
    )
    transcription_template: str = (
        "You have received a voicemail from the number {from_number}. The voicemail "
        'transcription is as follows: "{transcription_text}" and the Call SID is {call_sid}'
    )

    # --- several projects ---
    accounts: dict[str, AccountSettings] = Field(
        default_factory=dict,
        description="per-account overrides of the signing key, SignalWire credentials and "
        "forward and alert numbers, as JSON keyed by AccountSid; an account not listed, or a "
        "setting not given, takes the default above",
    )

    @field_validator("window_hopping_s", "alert_windows_s", mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(int(part) for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _kafka_security_fits(self) -> Self:
        """Settings that the chosen protocol would silently ignore are mistakes: a user
        who set a password but not the protocol would otherwise connect in plaintext."""
        protocol = self.kafka_security_protocol
        named = f"SWITCHBOARD_KAFKA_SECURITY_PROTOCOL={protocol.value}"
        sasl = {
            "SWITCHBOARD_KAFKA_USERNAME": self.kafka_username,
            "SWITCHBOARD_KAFKA_PASSWORD": self.kafka_password,
        }
        tls = {
            "SWITCHBOARD_KAFKA_CA_FILE": self.kafka_ca_file,
            "SWITCHBOARD_KAFKA_CERT_FILE": self.kafka_cert_file,
            "SWITCHBOARD_KAFKA_KEY_FILE": self.kafka_key_file,
        }
        if protocol.sasl and not all(sasl.values()):
            raise ValueError(f"{named} needs {' and '.join(sasl)}")
        if not protocol.sasl and any(sasl.values()):
            raise ValueError(f"{' / '.join(sasl)} set, but {named} does not use SASL")
        if not protocol.tls and any(tls.values()):
            raise ValueError(f"{' / '.join(tls)} set, but {named} does not use TLS")
        if (self.kafka_cert_file is None) != (self.kafka_key_file is None):
            raise ValueError(
                "mutual TLS needs both SWITCHBOARD_KAFKA_CERT_FILE and SWITCHBOARD_KAFKA_KEY_FILE"
            )
        if self.hash_numbers and not self.number_hash_key:
            raise ValueError("SWITCHBOARD_HASH_NUMBERS needs SWITCHBOARD_NUMBER_HASH_KEY")
        if (self.topic_min_insync_replicas or 0) > self.topic_replication:
            raise ValueError(
                "SWITCHBOARD_TOPIC_MIN_INSYNC_REPLICAS is above SWITCHBOARD_TOPIC_REPLICATION: "
                "no write could ever be acknowledged"
            )
        return self

    @model_validator(mode="after")
    def _clickhouse_cluster_needs_servers(self) -> Self:
        if self.clickhouse_cluster and self.embedded_clickhouse:
            raise ValueError(
                "SWITCHBOARD_CLICKHOUSE_CLUSTER is set, but the embedded engine (chDB) has "
                "no cluster: set SWITCHBOARD_CLICKHOUSE_URL to one of the cluster's servers"
            )
        return self

    def for_account(self, account_sid: str | None) -> Settings:
        """These settings as the account sees them: its own overrides over the defaults."""
        overrides = self.accounts.get(account_sid or "")
        if overrides is None:
            return self
        return self.model_copy(update=overrides.model_dump(exclude_none=True))

    @property  # not cached: `model_copy(update={"clickhouse_url": ...})` must see the new URL
    def clickhouse_dsn(self) -> str:
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def embedded_clickhouse(self) -> bool:
        return self.clickhouse_dsn.startswith("chdb:")

    @property
    def exports_path(self) -> Path:
        return self.exports_dir or self.data_dir / "exports"

    @property
    def signalwire_configured(self) -> bool:
        return bool(
            self.signalwire_project_id and self.signalwire_token and self.signalwire_space_url
        )


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once at start-up; a bad variable fails here, by name."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if not err["loc"]:  # a check across settings: its message names them
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            field, *inside = (str(p) for p in err["loc"])
            name = f"SWITCHBOARD_{field.upper()}"
            if inside:  # within a JSON setting: where, in its own terms
                name += "".join(f"[{p}]" for p in inside)
            problems.append(f"{name}: {err['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
