"""Secrets stay out of logs and error messages; servers bind to loopback by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.settings import Settings
from switchboard.broker import free_port
from tests.harness import Stage, post_form, wait_for

SECRETS = {
    "signing_key": "sk-signing-9f8e7d6c5b4a",
    "api_token": "tok-api-1a2b3c4d5e6f",
    "signalwire_token": "PT-signalwire-0a9b8c7d",
}
CLICKHOUSE_PASSWORD = "pw-clickhouse-5e4d3c2b"


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
