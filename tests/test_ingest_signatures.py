"""Signatures: with a signing key configured, only callbacks signed for the URL the
provider called, with exactly these parameters, reach Kafka; everything else is a 403
and lands nothing. Signatures are computed with the signalwire SDK, as the provider does."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr
from signalwire.request_validator import RequestValidator
from starlette.testclient import TestClient

from contract.envelope import Envelope, SignatureVerdict
from contract.kinds import CallbackKind
from contract.settings import Settings
from ingest.app import create_app
from ingest.signatures import SignatureChecker, _with_default_port
from tests.harness import read_topic, records_on_topics, warm_idempotence

# Twilio's published example (twilio.com/docs/usage/security), quoted in NOTES.md.
VECTOR_KEY = "12345"
VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
VECTOR_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="

PUBLIC = "https://mycompany.com"  # what the provider calls; a proxy forwards to the edge
VOICE_PATH = "/callbacks/voice?foo=1&bar=2"
SMS = {"MessageSid": "SM0123456789abcdef0123456789abcdef", "MessageStatus": "delivered"}

sdk = RequestValidator(VECTOR_KEY)


def form_signature(url: str, params: dict[str, str]) -> str:
    """The Twilio (LaML) scheme: base64 HMAC-SHA1 over the URL and the sorted parameters."""
    return str(sdk.build_signature_with_compatibility(url, params))


def json_signature(url: str, body: bytes) -> str:
    """The SignalWire scheme: hex HMAC-SHA1 over the URL and the raw body."""
    return str(sdk.build_signature(url, body.decode()))


def test_twilios_published_vector_validates_through_the_edges_checker() -> None:
    checker = SignatureChecker(VECTOR_KEY, PUBLIC + "/")
    url = checker.public_url("/myapp.php?foo=1&bar=2")
    assert url == VECTOR_URL
    assert checker.verify(url, VECTOR_SIGNATURE, raw=b"", form=VECTOR_PARAMS)
    # the default port may or may not be in the URL the provider signed
    assert checker.verify(
        "https://mycompany.com:443/myapp.php?foo=1&bar=2",
        VECTOR_SIGNATURE,
        raw=b"",
        form=VECTOR_PARAMS,
    )

    altered = {**VECTOR_PARAMS, "Digits": "1235"}
    assert not checker.verify(url, VECTOR_SIGNATURE, raw=b"", form=altered)
    assert not checker.verify(
        url.replace("bar=2", "bar=3"), VECTOR_SIGNATURE, raw=b"", form=VECTOR_PARAMS
    )
    assert not checker.verify(
        "https://mycompany.com:8443/myapp.php?foo=1&bar=2",
        VECTOR_SIGNATURE,
        raw=b"",
        form=VECTOR_PARAMS,
    )
    other_port = "https://mycompany.com:8443/myapp.php?foo=1&bar=2"
    assert checker.verify(
        other_port, form_signature(other_port, VECTOR_PARAMS), raw=b"", form=VECTOR_PARAMS
    )
    assert not checker.verify(url, None, raw=b"", form=VECTOR_PARAMS)
    assert not checker.verify(url, "", raw=b"", form=VECTOR_PARAMS)
    assert not SignatureChecker("54321", PUBLIC).verify(
        url, VECTOR_SIGNATURE, raw=b"", form=VECTOR_PARAMS
    )
    # nested JSON makes the SDK raise rather than answer: still just "invalid"
    assert not checker.verify(url, "abc", raw=b'{"CallSid": {"a": [1]}}', form=None)
    assert SignatureChecker(VECTOR_KEY, None).public_url("/x") is None


@pytest.fixture
def signed(topics: Settings) -> Settings:
    return topics.model_copy(update={"signing_key": SecretStr(VECTOR_KEY), "public_url": PUBLIC})


@pytest.fixture
def edge(signed: Settings) -> Iterator[TestClient]:
    warm_idempotence(signed)
    with TestClient(create_app(signed)) as client:
        yield client


@pytest.mark.kafka
def test_the_vectors_callback_signed_for_the_edges_public_url_is_accepted(
    edge: TestClient, signed: Settings
) -> None:
    # The provider signs the URL it calls: the public base, then the edge's path and query.
    signature = form_signature(PUBLIC + VOICE_PATH, VECTOR_PARAMS)
    response = edge.post(VOICE_PATH, data=VECTOR_PARAMS, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 204, response.text

    [record] = read_topic(signed, CallbackKind.VOICE.spec.raw_topic, expect=1)
    envelope = Envelope.from_bytes(record.value())
    assert record.key() == b"CA1234567890ABCDE"
    assert envelope.params == VECTOR_PARAMS
    assert envelope.tags == {"foo": "1", "bar": "2"}
    assert envelope.signature is SignatureVerdict.VALID


@pytest.mark.kafka
def test_json_bodies_signed_with_the_signalwire_scheme_are_accepted(
    edge: TestClient, signed: Settings
) -> None:
    body = orjson.dumps({"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": 30008})
    signature = json_signature(PUBLIC + "/callbacks/sms?campaign=json", body)
    response = edge.post(
        "/callbacks/sms?campaign=json",
        content=body,
        headers={"content-type": "application/json", "X-SignalWire-Signature": signature},
    )
    assert response.status_code == 204, response.text
    [record] = read_topic(signed, CallbackKind.SMS.spec.raw_topic, expect=1)
    assert Envelope.from_bytes(record.value()).signature is SignatureVerdict.VALID


@pytest.mark.kafka
def test_without_a_public_url_the_request_url_is_the_signed_one(topics: Settings) -> None:
    settings = topics.model_copy(update={"signing_key": SecretStr(VECTOR_KEY)})
    warm_idempotence(settings)
    signature = form_signature("http://testserver/callbacks/sms", SMS)
    with TestClient(create_app(settings)) as client:
        headers = {"X-SignalWire-Signature": signature}
        assert client.post("/callbacks/sms", data=SMS, headers=headers).status_code == 204


@pytest.mark.kafka
def test_refused_signatures_are_403_and_land_nothing(
    edge: TestClient, signed: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    path = "/callbacks/sms?campaign=spring"
    url = PUBLIC + path
    good = form_signature(url, SMS)
    other_key = str(RequestValidator("54321").build_signature_with_compatibility(url, SMS))
    other_port = form_signature(url.replace(".com/", ".com:8443/"), SMS)
    plain_http = form_signature(url.replace("https:", "http:"), SMS)
    # the signature of this message's earlier callback, kept and sent again with the later one
    stale = form_signature(url, {**SMS, "MessageStatus": "sent"})
    cases: dict[str, tuple[str, dict[str, str], str | None]] = {
        "missing": (path, SMS, None),
        "forged": (path, SMS, "Zm9yZ2VkIQ=="),
        "stale (the message's earlier callback's)": (path, SMS, stale),
        "replayed with altered params": (path, {**SMS, "MessageStatus": "failed"}, good),
        "replayed with an added param": (path, {**SMS, "ErrorCode": "30007"}, good),
        "replayed with altered tags": ("/callbacks/sms?campaign=autumn", SMS, good),
        "replayed to another kind": (
            "/callbacks/voice?campaign=spring",
            {"CallSid": "CA1", **SMS},
            good,
        ),
        "signed for another port": (path, SMS, other_port),
        "signed for plain http": (path, SMS, plain_http),
        "signed with another key": (path, SMS, other_key),
        "the vector's own signature": (VOICE_PATH, VECTOR_PARAMS, VECTOR_SIGNATURE),
    }
    for why, (target, params, signature) in cases.items():
        caplog.clear()
        headers = {"X-Twilio-Signature": signature} if signature else {}
        response = edge.post(target, data=params, headers=headers)
        assert response.status_code == 403, why
        assert response.json()["error"] == "bad_signature", why
        [line] = [r.getMessage() for r in caplog.records if r.name == "ingest.callbacks"]
        assert f"sid={params['MessageSid' if 'sms' in target else 'CallSid']}:" in line, line

    body = orjson.dumps(SMS)
    json_headers = {"content-type": "application/json"}
    altered = body.replace(b"delivered", b"failed")
    for why, content, signature in [
        ("JSON missing", body, None),
        ("JSON altered", altered, json_signature(url, body)),
        ("JSON forged", body, "0" * 40),
    ]:
        headers = json_headers | ({"X-SignalWire-Signature": signature} if signature else {})
        response = edge.post(path, content=content, headers=headers)
        assert response.status_code == 403, why

    assert set(records_on_topics(signed).values()) == {0}
    # the same callback, rightly signed, does land: the count above could have seen it
    response = edge.post(path, data=SMS, headers={"X-Twilio-Signature": good})
    assert response.status_code == 204
    assert sum(records_on_topics(signed).values()) == 1


def _sdk_rule(checker_key: str, url: str, signature: str, form: dict[str, str]) -> bool:
    """The rule as the SDK's `validate` states it: valid for this URL (with or without its
    port), and not just as valid on the default port (see `SignatureChecker.verify`)."""
    validator = RequestValidator(checker_key)
    try:
        if not validator.validate(url, form, signature):
            return False
        default = _with_default_port(url)
        return default is None or not validator.validate(default, form, signature)
    except (TypeError, ValueError, AttributeError):
        return False


_URLS = st.builds(
    lambda scheme, host, port, path, query: (
        f"{scheme}://{host}{'' if port is None else f':{port}'}/{path}{query}"
    ),
    st.sampled_from(["http", "https"]),
    st.sampled_from(["mycompany.com", "edge.example.org"]),
    st.sampled_from([None, 80, 443, 8080, 8443]),
    st.text("abc/_-.", max_size=12),
    st.sampled_from(["", "?campaign=spring", "?foo=1&bar=2"]),
)
_FORMS = st.dictionaries(
    st.sampled_from(["MessageSid", "MessageStatus", "ErrorCode", "To", "From", "Body"]),
    st.text(max_size=20),
    max_size=6,
)


@hypothesis_settings(max_examples=400, deadline=None)
@given(url=_URLS, form=_FORMS, data=st.data())
def test_a_form_posts_verdict_is_the_sdk_rules_for_any_url_and_signature(
    url: str, form: dict[str, str], data: st.DataObject
) -> None:
    """The checker's one-HMAC path for form posts decides as the SDK's `validate` and the
    default-port rule do, for signatures made for this URL, its variants on other ports
    and without a port, and for garbage."""
    signed_for = data.draw(
        st.sampled_from(
            [
                url,
                url.replace(":8080", "").replace(":8443", "").replace(":80/", "/"),
                url.replace("mycompany.com/", "mycompany.com:443/"),
                url.replace("edge.example.org/", "edge.example.org:80/"),
                url.replace(".com/", ".com:8443/").replace(".org/", ".org:8080/"),
            ]
        )
    )
    signature = data.draw(
        st.one_of(st.just(form_signature(signed_for, form)), st.text(max_size=30))
    )
    checker = SignatureChecker(VECTOR_KEY, None)
    assert checker.verify(url, signature, raw=b"", form=form) == _sdk_rule(
        VECTOR_KEY, url, signature, form
    )
