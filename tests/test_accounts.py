"""Several SignalWire projects on one Switchboard (SWITCHBOARD_ACCOUNTS): each callback is
verified with its own account's signing key, and forwards go out with the account's own
numbers and credentials, as the fake SignalWire records them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka import Producer
from pydantic import SecretStr
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator  # an implementation not ours

from contract.alerts import Alert, AlertType, fingerprint, make_alert_id
from contract.envelope import Envelope
from contract.errors import ConfigurationError
from contract.kafka import producer_config
from contract.kinds import CallbackKind
from contract.settings import AccountSettings, Settings, load_settings
from contract.topics import Topic
from ingest.app import create_app
from processors.intake import intake_consumer
from sinks.alerts import alert_dispatch_consumer
from sinks.clickhouse.store import Store
from sinks.signalwire.forwards import forwards_consumer
from tests.callbacks import transcription
from tests.fake_signalwire import FakeSignalWire
from tests.harness import Running, read_topic, wait_for, warm_idempotence
from tests.harness import produce as harness_produce
from tests.proc_traffic import produce
from tests.sink_data import PROJECT, T0, with_signalwire

pytestmark = pytest.mark.kafka

ACCOUNT_A, ACCOUNT_B, OTHER = "AC" + "a" * 32, "AC" + "b" * 32, "AC" + "c" * 32
KEY_A, KEY_B, DEFAULT_KEY = "PSK_key_of_a", "PSK_key_of_b", "PSK_default"
PUBLIC = "https://hooks.example.com"
PATH = "/callbacks/sms?campaign=agency"


def accounts(**per_account: AccountSettings) -> dict[str, AccountSettings]:
    return {ACCOUNT_A: per_account["a"], ACCOUNT_B: per_account["b"]}


@pytest.fixture
def edge(topics: Settings) -> Iterator[tuple[TestClient, Settings]]:
    settings = topics.model_copy(
        update={
            "signing_key": SecretStr(DEFAULT_KEY),
            "public_url": PUBLIC,
            "accounts": accounts(
                a=AccountSettings(signing_key=SecretStr(KEY_A)),
                b=AccountSettings(signing_key=SecretStr(KEY_B)),
            ),
        }
    )
    warm_idempotence(settings)
    with TestClient(create_app(settings)) as client:
        yield client, settings


def post(client: TestClient, sid: str, account: str, key: str) -> int:
    params = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": account}
    signature = RequestValidator(key).compute_signature(PUBLIC + PATH, params)
    response = client.post(PATH, data=params, headers={"X-SignalWire-Signature": signature})
    return response.status_code


def test_a_callback_is_checked_with_the_key_of_the_account_it_names(
    edge: tuple[TestClient, Settings],
) -> None:
    client, settings = edge
    answers = {
        "SM-a-by-a": post(client, "SM-a-by-a", ACCOUNT_A, KEY_A),
        "SM-b-by-a": post(client, "SM-b-by-a", ACCOUNT_B, KEY_A),  # A's key, naming B
        "SM-b-by-b": post(client, "SM-b-by-b", ACCOUNT_B, KEY_B),
        "SM-a-by-default": post(client, "SM-a-by-default", ACCOUNT_A, DEFAULT_KEY),
        "SM-other-by-default": post(client, "SM-other-by-default", OTHER, DEFAULT_KEY),
        "SM-other-by-a": post(client, "SM-other-by-a", OTHER, KEY_A),
    }
    assert answers == {
        "SM-a-by-a": 204,
        "SM-b-by-a": 403,
        "SM-b-by-b": 204,
        "SM-a-by-default": 403,  # an account with a key of its own takes only that one
        "SM-other-by-default": 204,  # an account not listed takes the default
        "SM-other-by-a": 403,
    }
    landed = read_topic(settings, CallbackKind.SMS.spec.raw_topic, expect=3)
    assert sorted(Envelope.from_bytes(r.value()).sid for r in landed) == [
        "SM-a-by-a",
        "SM-b-by-b",
        "SM-other-by-default",
    ]


def with_account(env: Envelope, account: str) -> Envelope:
    return dataclasses.replace(env, params=env.params | {"AccountSid": account})


def test_forwards_go_to_each_accounts_numbers_with_its_own_credentials(
    topics: Settings, store: Store, fake: FakeSignalWire
) -> None:
    fake.reset()
    settings = with_signalwire(
        topics,
        fake.base_url,
        forward_from="+15550000001",
        forward_to="+15550000002",
        accounts=accounts(
            a=AccountSettings(
                signalwire_project_id=ACCOUNT_A,
                signalwire_token=SecretStr("token-of-a"),
                signalwire_space_url="agency-a.signalwire.com",
                forward_from="+15550001001",
                forward_to="+15550001002",
            ),
            # B keeps the default credentials and sender, with numbers of its own to reach
            b=AccountSettings(forward_to="+15550002002"),
        ),
        process_batch_wait_s=0.05,
    )
    produce(
        settings,
        [
            with_account(transcription("TR-a", "completed", call_sid="CA-a"), ACCOUNT_A),
            with_account(transcription("TR-b", "completed", call_sid="CA-b"), ACCOUNT_B),
            with_account(transcription("TR-other", "completed", call_sid="CA-o"), OTHER),
        ],
    )
    sink_producer = Producer(producer_config(settings))
    group = settings.topic_prefix + "forwards"
    with Running(
        intake_consumer(settings),
        forwards_consumer(settings, store, sink_producer, group=group),
    ):
        wait_for(lambda: len(fake.sent_messages()) >= 3, what="three forwards sent", timeout=60)

    sent = {}
    for request in fake.requests:
        if request.method == "POST" and request.path.endswith("/Messages.json"):
            call_sid = request.form["Body"].rsplit(" ", 1)[-1]
            sent[call_sid] = (request.path.split("/")[3], request.basic_auth, request.form["To"])
    assert sent == {
        "CA-a": (ACCOUNT_A, (ACCOUNT_A, "token-of-a"), "+15550001002"),
        "CA-b": (PROJECT, (PROJECT, "tok"), "+15550002002"),
        "CA-o": (PROJECT, (PROJECT, "tok"), "+15550000002"),
    }
    froms = {r.form["To"]: r.form["From"] for r in fake.requests if r.method == "POST"}
    assert froms["+15550001002"] == "+15550001001"
    assert froms["+15550002002"] == froms["+15550000002"] == "+15550000001"


def test_accounts_are_read_from_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SWITCHBOARD_ACCOUNTS",
        orjson.dumps({ACCOUNT_A: {"signing_key": KEY_A, "alert_to": "+15550003003"}}).decode(),
    )
    settings = load_settings(signing_key=SecretStr(DEFAULT_KEY), alert_to="+15550009999")
    own = settings.for_account(ACCOUNT_A)
    assert own.signing_key is not None and own.signing_key.get_secret_value() == KEY_A
    assert own.alert_to == "+15550003003"
    assert settings.for_account(OTHER).alert_to == "+15550009999"
    monkeypatch.setenv("SWITCHBOARD_ACCOUNTS", '{"AC1": {"signing_kee": "typo"}}')
    with pytest.raises(
        ConfigurationError, match=r"SWITCHBOARD_ACCOUNTS\[AC1\]\[signing_kee\]: Extra inputs"
    ):
        load_settings()


def test_an_alert_about_an_account_goes_to_that_accounts_alert_number(
    topics: Settings, store: Store, fake: FakeSignalWire
) -> None:
    fake.reset()
    settings = with_signalwire(
        topics,
        fake.base_url,
        alert_to="+15550007777",
        forward_from="+15550009999",
        alert_report_wait_s=0,
        accounts=accounts(
            a=AccountSettings(
                signalwire_project_id=ACCOUNT_A,
                signalwire_token=SecretStr("token-of-a"),
                signalwire_space_url="agency-a.signalwire.com",
                alert_to="+15550001007",
            ),
            b=AccountSettings(),
        ),
    )
    alerts = [
        Alert(
            make_alert_id(fingerprint(AlertType.CALL_FAILURES, scope, "900s"), T0),
            AlertType.CALL_FAILURES,
            scope,
            T0,
            T0 + 900,
            count=0,
            threshold=5,
            value=5,
            raised_at=T0 + 300,
        )
        for scope in (f"account:{ACCOUNT_A}", "campaign:spring")
    ]
    harness_produce(settings, Topic.ALERTS, [(a.alert_id, a.to_bytes()) for a in alerts])
    producer = Producer(producer_config(settings))
    group = settings.topic_prefix + "alert-dispatch"
    with Running(alert_dispatch_consumer(settings, store, producer, group=group)):
        wait_for(lambda: len(fake.sent_messages()) >= 2, what="two alert SMS", timeout=60)

    sent = {
        r.form["To"]: (r.path.split("/")[3], r.basic_auth, r.form["From"])
        for r in fake.requests
        if r.method == "POST"
    }
    assert sent == {
        "+15550001007": (ACCOUNT_A, (ACCOUNT_A, "token-of-a"), "+15550009999"),
        "+15550007777": (PROJECT, (PROJECT, "tok"), "+15550009999"),
    }
