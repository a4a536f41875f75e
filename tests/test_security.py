"""Secrets stay out of logs and error messages; servers bind to loopback by default."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from contract.settings import Settings
from switchboard.broker import LocalBroker, free_port
from switchboard.tls import make_ca
from tests.harness import Stage, post_form, secure_settings, wait_for

SECRETS = {
    "signing_key": "sk-signing-9f8e7d6c5b4a",
    "api_token": "tok-api-1a2b3c4d5e6f",
    "signalwire_token": "PT-signalwire-0a9b8c7d",
}
CLICKHOUSE_PASSWORD = "pw-clickhouse-5e4d3c2b"
KAFKA_PASSWORD = "pw-kafka-wrong-7f6e5d4c"


def test_servers_bind_to_loopback_by_default() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.ingest_host == "127.0.0.1"
    assert settings.api_host == "127.0.0.1"


def test_malformed_setting_names_the_variable_and_not_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from contract.errors import ConfigurationError
    from contract.settings import load_settings

    monkeypatch.setenv("SWITCHBOARD_INGEST_PORT", "eighty-eighty-secret")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(_env_file=None)
    assert "SWITCHBOARD_INGEST_PORT" in str(caught.value)
    assert "eighty-eighty-secret" not in str(caught.value)


@pytest.mark.kafka
def test_secrets_never_reach_the_logs(topics: Settings, tmp_path: Path) -> None:
    closed = free_port()
    settings = topics.model_copy(
        update={
            "signing_key": SECRETS["signing_key"],
            "api_token": SECRETS["api_token"],
            "signalwire_project_id": "PJ0001",
            "signalwire_token": SECRETS["signalwire_token"],
            "signalwire_space_url": "example.signalwire.com",
            "clickhouse_url": f"http://switchboard:{CLICKHOUSE_PASSWORD}@127.0.0.1:{closed}",
        }
    )
    ingest = Stage("ingest", settings, tmp_path).start()
    sink = Stage("sink", settings, tmp_path).start()
    try:
        edge = f"http://127.0.0.1:{settings.ingest_port}/callbacks/sms"
        # unsigned and wrongly signed callbacks are refused and logged
        assert wait_for(
            lambda: post_form(edge, {"MessageSid": "SM1"}) == 403,
            timeout=60,
            what="the edge refusing an unsigned callback",
        )
        # the sink cannot reach ClickHouse and says so, then gives up
        wait_for(lambda: not sink.alive(), timeout=90, what="the sink to give up")
    finally:
        ingest.terminate()
        if sink.alive():
            sink.kill()
    logs = ingest.log() + sink.log()
    assert "did not answer" in sink.log()  # the sink did explain itself
    for secret in [*SECRETS.values(), CLICKHOUSE_PASSWORD]:
        assert secret not in logs


STARTUP_S = 45.0  # well under the bounded start-up check's 30 tries of about 3 s each


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "named"),
    [
        ("wrong password", "SWITCHBOARD_KAFKA_USERNAME / SWITCHBOARD_KAFKA_PASSWORD"),
        ("untrusted CA", "SWITCHBOARD_KAFKA_CA_FILE"),
    ],
)
def test_refused_kafka_credentials_stop_every_stage_at_start_by_name(
    secure_kafka: LocalBroker, tmp_path: Path, fault: str, named: str
) -> None:
    """Every stage exits 2 at once with the setting to fix, not after minutes of refused
    reconnects; neither the wrong password nor the right one appears in its output."""
    if fault == "wrong password":
        settings = secure_settings(secure_kafka, tmp_path, kafka_password=KAFKA_PASSWORD)
        reason = "SASL authentication failed"
    else:
        other = make_ca(tmp_path / "other", "other-ca")
        settings = secure_settings(secure_kafka, tmp_path, kafka_ca_file=other.cert)
        reason = "TLS handshake failed"
    started = time.monotonic()
    stages = [Stage(name, settings, tmp_path).start() for name in ("ingest", "process", "sink")]
    try:
        codes = {}
        for stage in stages:
            assert stage.proc is not None
            left = STARTUP_S - (time.monotonic() - started)
            codes[stage.name] = stage.proc.wait(max(left, 0.1))
        took = time.monotonic() - started
    finally:
        for stage in stages:
            if stage.alive():
                stage.kill()
    assert codes == {"ingest": 2, "process": 2, "sink": 2}
    assert took < STARTUP_S
    for stage in stages:
        log = " ".join(stage.log().split())  # the console wraps the error line
        assert f"error: {reason}" in log and named in log, log[-2000:]
        assert KAFKA_PASSWORD not in log
        assert secure_kafka.password() not in log
