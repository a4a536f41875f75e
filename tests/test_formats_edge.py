"""The edge and every format: each format's signature scheme checked against an
independent implementation (the `twilio` package's RequestValidator, the `signalwire`
SDK's, hashlib), forged and altered bodies refused; and with Kafka unreachable, every
payload of a recognised format is a 503 (it was read and would have been kept) while a
malformed one is a 400."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from pydantic import SecretStr
from signalwire.request_validator import RequestValidator as SignalWireValidator
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator as TwilioValidator

from contract.envelope import Envelope
from contract.formats import Format
from contract.kinds import CallbackKind
from contract.settings import Settings
from ingest.app import create_app
from switchboard.broker import free_port
from tests.callback_fixtures import load
from tests.harness import isolated_settings, read_topic, warm_idempotence

KEY = "PSK_formats_test_key"
PUBLIC = "https://switchboard.example.com"
J = {"content-type": "application/json"}
FIXTURES = {f.name: f for f in load()}
REST = FIXTURES["signalwire-sms-rest-message-status"]
SWML = FIXTURES["signalwire-voice-swml-call-state-answered"]
STREAMS = FIXTURES["twilio-sms-eventstreams-delivered"]
FORM = FIXTURES["twilio-sms-failed-21610-stop"]
GET = FIXTURES["twilio-voice-busy-486"]

twilio = TwilioValidator(KEY)
signalwire = SignalWireValidator(KEY)


@pytest.fixture
def edge(topics: Settings) -> Iterator[TestClient]:
    warm_idempotence(topics)
    signed = topics.model_copy(update={"signing_key": SecretStr(KEY), "public_url": PUBLIC})
    with TestClient(create_app(signed)) as client:
        yield client


def sdk_accepts(url: str, body: bytes, signature: str) -> bool:
    """The signalwire SDK's verdict; it raises TypeError instead of returning False when
    its Twilio-scheme fallback meets a JSON body with non-string values."""
    try:
        return bool(signalwire.validate(url, body.decode(), signature))
    except TypeError:
        return False


def _hex(url: str, body: bytes) -> str:
    """SignalWire's JSON scheme, written out: hex HMAC-SHA1 of the URL and the raw body."""
    return hmac.new(KEY.encode(), url.encode() + body, hashlib.sha1).hexdigest()


@pytest.mark.kafka
def test_signalwire_json_webhooks_are_signed_in_hex_over_url_and_raw_body(
    edge: TestClient, topics: Settings
) -> None:
    for fixture, path in ((REST, "/callbacks/sms"), (SWML, "/callbacks/voice")):
        body = json.dumps(fixture.params).encode()
        url = PUBLIC + path + "?campaign=c"
        signature = _hex(url, body)
        assert sdk_accepts(url, body, signature)  # the SDK agrees

        def send(sig: str, content: bytes = body, p: str = path) -> int:
            headers = J | {"X-SignalWire-Signature": sig}
            return edge.post(p + "?campaign=c", content=content, headers=headers).status_code

        assert send(signature) == 204, fixture.name
        assert send(signature.upper()) == 403  # lower-case hex, as the provider sends it
        assert send(_hex(url, body + b" ")) == 403  # signed for another body
        altered = body.replace(b"+1555", b"+1666")
        assert altered != body and send(signature, altered) == 403
        assert not sdk_accepts(url, altered, signature)
        assert send(_hex(PUBLIC + "/callbacks/other?campaign=c", body)) == 403  # other URL
        assert send("") == 403
    [record] = read_topic(topics, CallbackKind.SMS.spec.raw_topic, expect=1)
    envelope = Envelope.from_bytes(record.value())
    assert envelope.signature == "valid" and envelope.format is Format.SIGNALWIRE_REST
    assert envelope.body == REST.params
    metrics = edge.get("/metrics").text
    for fmt in ("signalwire-rest", "swml"):
        line = f'switchboard_ingest_accepted_by_format_total{{format="{fmt}"}}'
        assert line in metrics and float(metrics.split(line)[1].split()[0]) >= 1, fmt


@pytest.mark.kafka
def test_compat_form_posts_and_gets_keep_the_twilio_scheme(
    edge: TestClient, topics: Settings
) -> None:
    url = PUBLIC + "/callbacks/sms"
    signature = twilio.compute_signature(url, FORM.params)
    assert twilio.validate(url, FORM.params, signature)
    headers = {"X-Twilio-Signature": signature}
    assert edge.post("/callbacks/sms", data=FORM.params, headers=headers).status_code == 204
    altered = FORM.params | {"ErrorCode": "30003"}
    assert edge.post("/callbacks/sms", data=altered, headers=headers).status_code == 403
    forged = {"X-Twilio-Signature": twilio.compute_signature(url + "?x=1", FORM.params)}
    assert edge.post("/callbacks/sms", data=FORM.params, headers=forged).status_code == 403

    # StatusCallbackMethod=GET: Twilio signs the full URL, parameters in its query
    query = urlencode(GET.params | {"campaign": "by-get"})
    get_url = f"{PUBLIC}/callbacks/voice?{query}"
    get_signature = twilio.compute_signature(get_url, {})
    assert twilio.validate(get_url, {}, get_signature)
    ok = edge.get(f"/callbacks/voice?{query}", headers={"X-Twilio-Signature": get_signature})
    assert ok.status_code == 204, ok.text
    tampered = query.replace("busy", "completed")
    bad = edge.get(f"/callbacks/voice?{tampered}", headers={"X-Twilio-Signature": get_signature})
    assert bad.status_code == 403
    [record] = read_topic(topics, CallbackKind.VOICE.spec.raw_topic, expect=1)
    envelope = Envelope.from_bytes(record.value())
    assert envelope.params == GET.params  # the provider's parameters...
    assert envelope.tags == {"campaign": "by-get"}  # ...and the URL's own tags apart
    assert envelope.signature == "valid"


@pytest.mark.kafka
def test_twilio_json_webhooks_carry_a_body_sha256(edge: TestClient, topics: Settings) -> None:
    body = json.dumps([STREAMS.params]).encode()
    digest = hashlib.sha256(body).hexdigest()
    path = f"/callbacks/sms?bodySHA256={digest}"
    signature = twilio.compute_signature(PUBLIC + path, {})
    assert twilio.validate(PUBLIC + path, body.decode(), signature)  # twilio's own check
    headers = J | {"X-Twilio-Signature": signature}
    assert edge.post(path, content=body, headers=headers).status_code == 204
    altered = body.replace(b"Ahoy", b"Ahem")
    assert not twilio.validate(PUBLIC + path, altered.decode(), signature)
    assert edge.post(path, content=altered, headers=headers).status_code == 403
    other = f"/callbacks/sms?bodySHA256={hashlib.sha256(altered).hexdigest()}"
    assert edge.post(other, content=altered, headers=headers).status_code == 403  # URL signed
    [record] = read_topic(topics, CallbackKind.SMS.spec.raw_topic, expect=1)
    assert Envelope.from_bytes(record.value()).format is Format.EVENT_STREAMS


@pytest.fixture
def unreachable(tmp_path: Path) -> Settings:
    """Settings whose Kafka is a port nothing listens on."""
    return isolated_settings(f"127.0.0.1:{free_port()}", tmp_path, produce_timeout_s=0.2)


MALFORMED: list[tuple[str, bytes, dict[str, str]]] = [
    ("sms", b'{"MessageSid": "SM1"', J),  # broken JSON
    ("sms", b'{"nothing": "known"}', J),  # no known format
    ("sms", json.dumps({"status": "sent", "project_id": "p"}).encode(), J),  # no id
    ("voice", json.dumps({"event_type": "calling.call.state", "params": {}}).encode(), J),
    ("sms", b"MessageStatus=sent", {"content-type": "application/x-www-form-urlencoded"}),
]


def test_kafka_unreachable_means_503_for_every_recognised_payload_and_400_for_malformed(
    unreachable: Settings,
) -> None:
    with TestClient(create_app(unreachable)) as edge:
        for fixture in FIXTURES.values():
            request: dict[str, Any] = fixture.request()
            response = edge.request(**request)
            assert response.status_code == 503, (fixture.name, response.text)
            assert response.headers["retry-after"] == str(unreachable.retry_after_s)
        for kind, body, headers in MALFORMED:
            response = edge.post(f"/callbacks/{kind}", content=body, headers=headers)
            assert response.status_code == 400, (body, response.text)


def test_a_body_of_no_known_format_is_told_what_is_accepted(unreachable: Settings) -> None:
    with TestClient(create_app(unreachable)) as edge:
        response = edge.post("/callbacks/sms", content=b"[]", headers=J)
        assert response.status_code == 400
        assert "accepted:" in response.json()["detail"]
