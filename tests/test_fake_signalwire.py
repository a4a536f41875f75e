"""The real SignalWire SDK, through `sinks.signalwire.client`, against the local fake."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime
from typing import Any

import pytest
from signalwire.rest import Client

from contract.settings import Settings
from sinks.signalwire import client as sw
from tests.fake_signalwire import FakeSignalWire

PROJECT = "PJ0123456789abcdef0123456789abcdef"
MESSAGES_PATH = f"/2010-04-01/Accounts/{PROJECT}/Messages.json"
FROM, TO = "+15550001111", "+15550002222"
FAILED_SID, RECORDING_SID = "SM" + "a" * 32, "RE" + "c" * 32


def _settings(api_base: str | None, **overrides: str | None) -> Settings:
    fields: dict[str, Any] = {
        "signalwire_project_id": PROJECT,
        "signalwire_token": "tok",
        "signalwire_space_url": "example.signalwire.com",
        "signalwire_api_base": api_base,
        **overrides,
    }
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


@pytest.fixture
def client(fake: FakeSignalWire) -> Client:
    fake.reset()
    made = sw.make_client(_settings(fake.base_url))
    assert made is not None
    return made


def test_send_sms_reaches_fake_with_basic_auth(fake: FakeSignalWire, client: Client) -> None:
    sid = sw.send_sms(client, from_=FROM, to=TO, body="hello")

    assert sid.startswith("SM") and len(sid) == 34
    assert fake.sent_messages() == [{"To": TO, "From": FROM, "Body": "hello"}]
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", MESSAGES_PATH)
    assert request.basic_auth == (PROJECT, "tok")
    fetched = sw.fetch_message(client, sid)
    assert fetched["status"] == "queued"
    assert (fetched["to"], fetched["from_"], fetched["body"]) == (TO, FROM, "hello")


def test_fetch_configured_failed_message(fake: FakeSignalWire, client: Client) -> None:
    sent_at = datetime(2024, 5, 1, 12, 30, 5, tzinfo=UTC)
    fake.set_message(
        FAILED_SID,
        status="undelivered",
        error_code=30003,
        error_message="Unreachable handset",
        to="+15550003333",
        date_sent=sent_at,
    )

    fetched = sw.fetch_message(client, FAILED_SID)

    assert fetched["status"] == "undelivered"
    assert (fetched["error_code"], fetched["error_message"]) == (30003, "Unreachable handset")
    assert fetched["to"] == "+15550003333"
    assert fetched["date_sent"] == sent_at
    assert fake.requests[0].path == f"/2010-04-01/Accounts/{PROJECT}/Messages/{FAILED_SID}.json"


def test_fail_next_500_is_retryable_then_recovers(fake: FakeSignalWire, client: Client) -> None:
    fake.fail_next(2, 500)
    for _ in range(2):
        with pytest.raises(sw.SignalWireError) as info:
            sw.send_sms(client, from_=FROM, to=TO, body="x")
        assert (info.value.status, info.value.retryable) == (500, True)

    sw.send_sms(client, from_=FROM, to=TO, body="x")
    assert len(fake.requests) == 3 and len(fake.sent_messages()) == 1


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (429, True), (503, True)],
)
def test_error_statuses_classified(
    fake: FakeSignalWire, client: Client, status: int, retryable: bool
) -> None:
    fake.fail_next(1, status)
    with pytest.raises(sw.SignalWireError) as info:
        sw.send_sms(client, from_=FROM, to=TO, body="x")
    assert (info.value.status, info.value.retryable) == (status, retryable)
    assert fake.sent_messages() == []


def test_only_creates_failure_spares_fetches(fake: FakeSignalWire, client: Client) -> None:
    fake.set_message("SM" + "b" * 32)
    fake.fail_next(1, 503, only_creates=True)
    assert sw.fetch_message(client, "SM" + "b" * 32)["status"] == "delivered"
    with pytest.raises(sw.SignalWireError):
        sw.send_sms(client, from_=FROM, to=TO, body="x")


def test_unknown_message_is_404_not_retryable(client: Client) -> None:
    with pytest.raises(sw.SignalWireError) as info:
        sw.fetch_message(client, "SM" + "0" * 32)
    assert (info.value.status, info.value.code, info.value.retryable) == (404, 20404, False)


def test_recording_fetch_deserializes(fake: FakeSignalWire, client: Client) -> None:
    fake.set_recording(RECORDING_SID, duration="42")
    recording = client.recordings(RECORDING_SID).fetch()
    assert (recording.sid, recording.duration, recording.status) == (
        RECORDING_SID,
        "42",
        "completed",
    )


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens
    made = sw.make_client(_settings(f"http://127.0.0.1:{port}"))
    assert made is not None
    with pytest.raises(sw.SignalWireError) as info:
        sw.send_sms(made, from_=FROM, to=TO, body="x")
    assert (info.value.status, info.value.retryable) == (None, True)


def test_make_client_none_without_credentials(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sw, "_warned_dry_run", False)
    unset = _settings(None, signalwire_project_id=None, signalwire_token=None)
    with caplog.at_level(logging.WARNING, logger=sw.__name__):
        assert sw.make_client(unset) is None
        assert sw.make_client(unset) is None
    assert len([r for r in caplog.records if "dry-run" in r.message]) == 1
