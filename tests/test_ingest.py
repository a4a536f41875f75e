"""The edge on the real broker: what it accepts lands on Kafka once and intact, keyed by
SID; what it refuses gets a 4xx, one log line saying why, and never reaches a topic."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from contract.envelope import Envelope, SignatureVerdict
from contract.kinds import CallbackKind
from contract.settings import Settings
from ingest.app import create_app
from tests.harness import read_topic, records_on_topics, warm_idempotence

pytestmark = pytest.mark.kafka

FORM = "application/x-www-form-urlencoded"
F = {"content-type": FORM}
J = {"content-type": "application/json"}

EXAMPLES: dict[CallbackKind, dict[str, str]] = {
    CallbackKind.SMS: {
        "MessageSid": "SM5f1c0b6e2d4a4f7e9b8c3d2e1f0a9b8c",
        "MessageStatus": "undelivered",
        "ErrorCode": "30003",
        "AccountSid": "AC7f2c14a8e6b94d0fa1c3e5b7d9f0a2c4",
        "From": "+15550001111",
        "To": "+15550002222",
        "Body": "Spring sale: 20% off & free shipping, reply STOP to opt out",
        "NumMedia": "0",
        "NumSegments": "1",
    },
    CallbackKind.VOICE: {
        "CallSid": "CA0b9f6c1d2e3f4a5b6c7d8e9f0a1b2c3d",
        "CallStatus": "completed",
        "AccountSid": "AC7f2c14a8e6b94d0fa1c3e5b7d9f0a2c4",
        "From": "+15550003333",
        "To": "+15550004444",
        "Direction": "outbound-api",
        "CallDuration": "42",
        "Timestamp": "Tue, 24 Nov 2026 10:15:00 +0000",
        "SequenceNumber": "3",
        "AudioInMos": "4.31",
    },
    CallbackKind.RECORDING: {
        "RecordingSid": "RE3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f",
        "RecordingStatus": "completed",
        "CallSid": "CA0b9f6c1d2e3f4a5b6c7d8e9f0a1b2c3d",
        "RecordingUrl": "https://example.signalwire.com/recordings/RE3c2b.mp3",
        "RecordingDuration": "17",
    },
    CallbackKind.TRANSCRIPTION: {
        "TranscriptionSid": "TR9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d",
        "TranscriptionStatus": "completed",
        "TranscriptionText": "Hi, it's Ana — please call me back about the order.",
        "CallSid": "CA0b9f6c1d2e3f4a5b6c7d8e9f0a1b2c3d",
        "From": "+15550003333",
    },
    CallbackKind.INBOUND_CALL: {
        "CallSid": "CA1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
        "CallStatus": "completed",
        "From": "+15550005555",
        "To": "+15550006666",
        "CallDuration": "125",
        "AudioInMos": "3.9",
    },
}


@pytest.fixture
def edge(topics: Settings) -> Iterator[TestClient]:
    warm_idempotence(topics)
    with TestClient(create_app(topics)) as client:
        yield client


def _envelope(record: Any) -> Envelope:
    return Envelope.from_bytes(record.value())


def test_each_kind_lands_on_its_topic_keyed_by_its_sid(edge: TestClient, topics: Settings) -> None:
    for kind, params in EXAMPLES.items():
        response = edge.post(f"/callbacks/{kind}?campaign=spring-sale&team=b", data=params)
        assert response.status_code == 204, response.text

    for kind, params in EXAMPLES.items():
        [record] = read_topic(topics, kind.spec.raw_topic, expect=1)
        sid = params[kind.spec.sid_param]
        assert record.key() == sid.encode()
        envelope = _envelope(record)
        assert envelope.kind is kind
        assert envelope.sid == sid
        assert envelope.params == params
        assert envelope.tags == {"campaign": "spring-sale", "team": "b"}
        assert envelope.signature is SignatureVerdict.UNCHECKED
        assert envelope.received_at > 1.7e9


def test_json_bodies_keep_scalars_as_text(edge: TestClient, topics: Settings) -> None:
    body = {"CallSid": "CA1", "CallStatus": "completed", "CallDuration": 61, "AudioInMos": 4.5}
    body |= {"Recorded": True, "ForwardedFrom": None}
    response = edge.post("/callbacks/inbound-call", content=orjson.dumps(body), headers=J)
    assert response.status_code == 204

    [record] = read_topic(topics, CallbackKind.INBOUND_CALL.spec.raw_topic, expect=1)
    assert _envelope(record).params == {
        "CallSid": "CA1",
        "CallStatus": "completed",
        "CallDuration": "61",
        "AudioInMos": "4.5",
        "Recorded": "true",
        "ForwardedFrom": "",
    }


def test_a_thousand_callbacks_are_exactly_a_thousand_records(
    edge: TestClient, topics: Settings
) -> None:
    kinds = list(CallbackKind)
    sent: dict[CallbackKind, dict[str, dict[str, str]]] = {kind: {} for kind in kinds}
    for i in range(1000):
        kind = kinds[i % len(kinds)]
        params = dict(EXAMPLES[kind])
        params[kind.spec.sid_param] = f"{kind.spec.sid_param[:2].upper()}{i:032x}"
        sent[kind][params[kind.spec.sid_param]] = params

    def post(kind: CallbackKind, params: dict[str, str]) -> int:
        return edge.post(f"/callbacks/{kind}?batch=1000", data=params).status_code

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(post, k, p) for k in kinds for p in sent[k].values()]
        codes = [f.result(timeout=60) for f in futures]
    assert codes == [204] * 1000

    for kind in kinds:
        records = read_topic(topics, kind.spec.raw_topic, expect=200)
        assert len(records) == 200
        landed = {}
        for record in records:
            envelope = _envelope(record)
            assert record.key() == envelope.sid.encode()
            assert envelope.tags == {"batch": "1000"}
            landed[envelope.sid] = envelope.params
        assert landed == sent[kind]
    assert sum(records_on_topics(topics).values()) == 1000


def _chunks(size: int) -> Iterator[bytes]:
    """A body without a Content-Length (chunked), so only counting it can find it too big."""
    for _ in range(size // 4096):
        yield b"a" * 4096


MALFORMED, NO_SID, MEDIA = "malformed", "missing_sid", "unsupported_media_type"
MULTIPART = {"content-type": "multipart/form-data; boundary=x"}

# (why, kind, body, headers, status, reason)
REJECTED: list[tuple[str, str, Any, dict[str, str], int, str]] = [
    ("not UTF-8", "sms", b"MessageSid=SM1&Body=\xff\xfe", F, 400, MALFORMED),
    ("bad escape", "sms", b"MessageSid=SM1&Body=%ff", F, 400, MALFORMED),
    ("field without =", "sms", b"MessageSid=SM1&oops", F, 400, MALFORMED),
    ("JSON broken", "sms", b'{"MessageSid": "SM1"', J, 400, MALFORMED),
    ("JSON array", "sms", b'["MessageSid", "SM1"]', J, 400, "unknown_format"),
    ("JSON of no format", "sms", b'{"sid": "SM1", "state": "sent"}', J, 400, "unknown_format"),
    ("JSON nested SID", "sms", b'{"MessageSid": {"a": 1}}', J, 400, NO_SID),
    (
        "SWML play",
        "voice",
        b'{"event_type": "calling.call.play", "params": {}}',
        J,
        400,
        "unhandled_event",
    ),
    ("no SID", "sms", b"MessageStatus=sent", F, 400, NO_SID),
    ("empty SID", "voice", b"CallSid=&CallStatus=busy", F, 400, NO_SID),
    ("blank SID", "recording", b'{"RecordingSid": "  "}', J, 400, NO_SID),
    ("other kind's SID", "transcription", b"CallSid=CA1", F, 400, NO_SID),
    ("empty body", "sms", b"", F, 400, NO_SID),
    ("unknown kind", "fax", b"FaxSid=FX1", F, 404, "unknown_kind"),
    ("empty kind", "", b"MessageSid=SM1", F, 404, "unknown_kind"),
    ("over 64 KiB", "sms", b"MessageSid=SM1&Body=" + b"a" * 65536, F, 413, "too_large"),
    ("over 64 KiB, chunked", "sms", _chunks(70_000), F, 413, "too_large"),
    ("text/plain", "sms", b"MessageSid=SM1", {"content-type": "text/plain"}, 415, MEDIA),
    ("multipart", "sms", b"--x\r\n\r\nSM1\r\n--x--", MULTIPART, 415, MEDIA),
    ("no content type", "sms", b"MessageSid=SM1", {}, 415, MEDIA),
]


def test_every_rejection_is_a_4xx_with_one_log_line_and_lands_nothing(
    edge: TestClient, topics: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest")
    for why, kind, body, headers, status, reason in REJECTED:
        caplog.clear()
        response = edge.post(f"/callbacks/{kind}", content=body, headers=headers)
        assert response.status_code == status, (why, response.text)
        assert response.json()["error"] == reason, why
        lines = [r for r in caplog.records if r.name.startswith("ingest")]
        assert len(lines) == 1, (why, [r.getMessage() for r in lines])
        assert lines[0].levelno == logging.WARNING
        assert f"({status} {reason})" in lines[0].getMessage(), why

    assert edge.get("/callbacks/sms").status_code == 400  # a GET callback with no MessageSid
    assert edge.put("/callbacks/sms").status_code == 405
    assert set(records_on_topics(topics).values()) == {0}
    # and the count above can see a record when one lands
    assert edge.post("/callbacks/sms", data=EXAMPLES[CallbackKind.SMS]).status_code == 204
    assert sum(records_on_topics(topics).values()) == 1


def test_an_accepted_callback_logs_its_kind_sid_status_and_error_code(
    edge: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest")
    edge.post("/callbacks/sms", data=EXAMPLES[CallbackKind.SMS])
    accepted = [r.getMessage() for r in caplog.records if r.name == "ingest.callbacks"]
    assert accepted == [
        "accepted sms sid=SM5f1c0b6e2d4a4f7e9b8c3d2e1f0a9b8c status=undelivered error_code=30003"
        " format=compat"
    ]


def test_health_readiness_and_openapi(edge: TestClient) -> None:
    assert edge.get("/healthz").text == "ok"
    assert edge.get("/readyz").status_code == 200

    response = edge.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/yaml")
    doc = yaml.safe_load(response.text)
    assert doc["openapi"].startswith("3.1")

    documented = {(path, verb.upper()) for path, ops in doc["paths"].items() for verb in ops}
    served = {
        (route.path, method)
        for route in edge.app.routes  # type: ignore[attr-defined]
        for method in route.methods - {"HEAD"}
    }
    # the callback route is documented once per kind, and once for the kinds it refuses
    each_kind = {(f"/callbacks/{kind}", "POST") for kind in CallbackKind}
    # GET callbacks are documented once, on /callbacks/{kind}
    assert documented == served | each_kind

    for kind in CallbackKind:
        post = doc["paths"][f"/callbacks/{kind}"]["post"]
        content = post["requestBody"]["content"]
        assert set(content) == {FORM, "application/json"}
        assert {c["schema"]["$ref"] for c in content.values()} == {f"#/components/schemas/{kind}"}
        assert set(post["responses"]) == {"204", "400", "403", "413", "415", "503"}
    unknown = doc["paths"]["/callbacks/{kind}"]["post"]
    [kind_param] = unknown["parameters"]
    assert kind_param["schema"]["not"]["enum"] == [kind.value for kind in CallbackKind]
    assert set(unknown["responses"]) == {"404"}
    schemas = doc["components"]["schemas"]
    for kind in CallbackKind:
        schema = schemas[kind.value]
        assert list(schema["properties"]) == [p.name for p in kind.spec.params], kind
        assert schema["required"] == [kind.spec.sid_param], kind
    reasons = {reason for *_, reason in REJECTED} | {"bad_signature", "unavailable"}
    assert set(schemas["Error"]["properties"]["error"]["enum"]) == reasons


def _samples(edge: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = edge.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_answers_rejections_and_produce_latency(edge: TestClient) -> None:
    before = _samples(edge)
    for _ in range(3):
        assert edge.post("/callbacks/voice", data=EXAMPLES[CallbackKind.VOICE]).status_code == 204
    assert edge.post("/callbacks/voice", data={"CallStatus": "busy"}).status_code == 400
    assert edge.post("/callbacks/fax", data={"FaxSid": "FX1"}).status_code == 404
    after = _samples(edge)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    requests = "switchboard_ingest_requests_total"
    rejected = "switchboard_ingest_rejected_total"
    assert delta(requests, kind="voice", status="204") == 3
    assert delta(requests, kind="voice", status="400") == 1
    assert delta(requests, kind="unknown", status="404") == 1
    assert delta(rejected, kind="voice", reason="missing_sid") == 1
    assert delta(rejected, kind="unknown", reason="unknown_kind") == 1
    assert delta("switchboard_ingest_produce_seconds_count") == 3
    assert delta("switchboard_ingest_produce_seconds_bucket", le="5.0") == 3
    assert after[("switchboard_ingest_in_flight", ())] == 0
