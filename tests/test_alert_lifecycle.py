"""Alerts through the real pipeline: a `switchboard process` child raises them from
callbacks, the sink's alerts writer keeps their history in ClickHouse, and the webhook
channel delivers each notification once, signed, to a local receiver that fails for a
while first."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contract.alerts import Alert, AlertRule, AlertState, AlertType
from contract.kafka import producer_config
from contract.settings import Settings
from contract.topics import Topic
from runtime.consumer import ConsumerRuntime
from sinks.alerts import Channel, alert_channel_consumer, alert_dispatch_consumer
from sinks.clickhouse.rows import record_row
from sinks.clickhouse.store import Store
from sinks.clickhouse.writer import table_writer
from switchboard.broker import free_port
from tests.callbacks import ACCOUNT, call
from tests.fake_signalwire import FakeSignalWire
from tests.harness import (
    Running,
    Stage,
    committed_total,
    serve_in_thread,
    settings_env,
    wait_for,
)
from tests.proc_traffic import produce, read_all, value
from tests.sink_data import with_signalwire

pytestmark = pytest.mark.kafka

SECRET = "whsec_" + base64.b64encode(b"a secret of the receiver's own!!").decode()
OUR_NUMBER = "+15550004242"
SCOPES = {f"account:{ACCOUNT}", f"number:{OUR_NUMBER}"}


class Receiver:
    """A webhook receiver that answers 503 to its first `failing` requests."""

    def __init__(self, failing: int) -> None:
        self.failing = failing
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            status = 503 if len(self.requests) < self.failing else 204
            self.requests.append((dict(request.headers), body, status))
        return Response(status_code=status)

    def accepted(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for h, b, status in self.requests if status == 204]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    r = Receiver(failing=3)
    app = Starlette(routes=[Route("/hook", r.hook, methods=["POST"])])
    with serve_in_thread(app, free_port()) as url:
        yield r, f"{url}/hook"


@pytest.fixture
def settings(topics: Settings, receiver: tuple[Receiver, str]) -> Settings:
    return topics.model_copy(
        update={
            "call_failure_threshold": 10,
            "failure_rate_min_volume": 100_000,  # the count rule only
            "alert_windows_s": (900,),
            "metrics_interval_s": 0.5,
            "process_batch_wait_s": 0.05,
            "alert_webhook_url": receiver[1],
            "alert_webhook_secret": SecretStr(SECRET),
            "rest_retry_base_s": 0.3,
        }
    )


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[Stage]:
    stage = Stage("process", settings, tmp_path)
    yield stage
    if stage.alive():
        assert stage.terminate() == 0, stage.log()[-3000:]


def _webhook(settings: Settings, store: Store, group: str = "webhook") -> ConsumerRuntime:
    producer = Producer(producer_config(settings))
    return alert_channel_consumer(
        settings, store, producer, Channel.WEBHOOK, group=settings.topic_prefix + group
    )


def _alerts_writer(settings: Settings, store: Store) -> ConsumerRuntime:
    return table_writer(
        settings,
        store,
        Topic.ALERTS,
        group="alerts-writer",
        name="alerts",
        mapper=record_row("alerts", Alert),
    )


def _alerts(settings: Settings) -> list[Alert]:
    return [Alert.from_bytes(value(m)) for m in read_all(settings, Topic.ALERTS)]


def _failed_calls(n: int, at: float, tag: str) -> list:
    return [
        call(f"CA{tag}{i:030d}", "failed", at=at + i, from_=OUR_NUMBER, to=f"+1555200{i:04d}")
        for i in range(n)
    ]


def test_a_burst_fires_recovery_resolves_and_the_webhook_gets_each_once(
    settings: Settings,
    worker: Stage,
    store: Store,
    receiver: tuple[Receiver, str],
) -> None:
    hook, _ = receiver
    t0 = time.time() - 3600  # provider timestamps: an hour of history, replayed fast
    produce(settings, _failed_calls(12, t0, "a"))
    worker.start()
    with Running(_webhook(settings, store), _alerts_writer(settings, store)):
        fired = wait_for(
            lambda: len(a := _alerts(settings)) == 2 and a,
            timeout=60,
            what=f"two alerts firing; log:\n{worker.log()[-3000:]}",
        )
        assert {(a.type, a.state, a.scope) for a in fired} == {
            (AlertType.CALL_FAILURES, AlertState.FIRING, s) for s in SCOPES
        }
        # twenty minutes of event time later the calls go through again
        recovered = [
            call(f"CAb{i:030d}", "completed", at=t0 + 1200 + i, from_=OUR_NUMBER) for i in range(5)
        ]
        produce(settings, recovered)
        alerts = wait_for(
            lambda: len(a := _alerts(settings)) == 4 and a,
            timeout=60,
            what=f"the alerts resolved; log:\n{worker.log()[-3000:]}",
        )
        wait_for(lambda: len(hook.accepted()) == 4, timeout=60, what="4 webhook deliveries")
        time.sleep(2)  # a duplicate would come now

    assert sorted((a.scope, a.state) for a in alerts) == sorted(
        (s, state) for s in SCOPES for state in (AlertState.FIRING, AlertState.RESOLVED)
    )
    assert not any(a.silenced for a in alerts)
    # the receiver: 3 refusals (retried, same webhook-id), then each notification once
    assert len(hook.requests) == 4 + 3
    accepted = hook.accepted()
    by_id = {a.alert_id: a for a in alerts}
    assert sorted(h["webhook-id"] for h, _ in accepted) == sorted(by_id)
    verifier = Webhook(SECRET)
    for headers, body in accepted:
        payload = verifier.verify(body, headers)  # raises on a bad signature
        assert payload["alert_id"] == headers["webhook-id"]
        assert Alert.from_bytes(body) == by_id[headers["webhook-id"]]
        assert payload["version"] == 2
    refused_ids = {h["webhook-id"] for h, _, status in hook.requests if status == 503}
    assert refused_ids <= set(by_id)
    # the history in ClickHouse, and each delivery recorded
    rows = store.query(
        f"SELECT scope, state, started_at FROM {store.table('alerts')} FINAL ORDER BY raised_at"
    )
    assert sorted((r[0], r[1]) for r in rows) == sorted((a.scope, a.state.value) for a in alerts)
    sent = store.query(
        f"SELECT forward_id, state FROM {store.table('forwards')} FINAL "
        "WHERE kind = 'alert_webhook'"
    )
    assert sorted((r[0], r[1]) for r in sent) == sorted((f"{i}-webhook", "sent") for i in by_id)

    # a replay (a new consumer group reads the whole topic again) sends nothing
    replay = settings.topic_prefix + "webhook-replay"
    with Running(_webhook(settings, store, group="webhook-replay")):
        wait_for(
            lambda: committed_total(settings, replay, Topic.ALERTS) == 4,
            timeout=60,
            what="the replay read",
        )
    assert len(hook.requests) == 4 + 3


def _cli(settings: Settings, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout if "--format" in args else done.stderr  # what it says to a person


def test_a_silenced_scope_notifies_no_one_but_its_alerts_are_kept(
    settings: Settings,
    worker: Stage,
    store: Store,
    receiver: tuple[Receiver, str],
    fake: FakeSignalWire,
) -> None:
    hook, _ = receiver
    hook.failing = 0
    fake.reset()
    sms_settings = with_signalwire(
        settings, fake.base_url, alert_to="+15550007777", forward_from="+15550009999"
    )
    sms_settings = sms_settings.model_copy(update={"alert_report_wait_s": 0.0})
    out = _cli(settings, "silence", f"number:{OUR_NUMBER}", "--for", "2h", "--comment", "fixing")
    silence_id = re.findall(r"SI[0-9a-f]{16}", out)[0]
    [listed] = orjson.loads(_cli(settings, "silences", "--format", "json"))
    assert (listed["silence_id"], listed["scope"], listed["type"]) == (
        silence_id,
        f"number:{OUR_NUMBER}",
        "all",
    )

    produce(settings, _failed_calls(12, time.time() - 600, "s"))
    worker.start()
    dispatch = alert_dispatch_consumer(
        sms_settings, store, Producer(producer_config(settings)), group="sms-dispatch"
    )
    with Running(_webhook(settings, store), _alerts_writer(settings, store), dispatch):
        alerts = wait_for(
            lambda: len(a := _alerts(settings)) == 2 and a,
            timeout=60,
            what=f"two alerts firing; log:\n{worker.log()[-3000:]}",
        )
        wait_for(lambda: len(hook.accepted()) == 1, timeout=60, what="the account's webhook")
        wait_for(lambda: len(fake.sent_messages()) == 1, timeout=60, what="the account's SMS")
        wait_for(
            lambda: store.query(f"SELECT count() FROM {store.table('alerts')} FINAL")[0][0] == 2,
            timeout=60,
            what="both alerts in ClickHouse",
        )
        time.sleep(2)  # a notification of the silenced one would come now

    silenced = {a.scope: a.silenced for a in alerts}
    assert silenced == {f"account:{ACCOUNT}": False, f"number:{OUR_NUMBER}": True}
    [(headers, _)] = hook.accepted()
    account = next(a for a in alerts if not a.silenced)
    assert headers["webhook-id"] == account.alert_id
    [sms] = fake.sent_messages()
    assert f"account:{ACCOUNT}" in sms["Body"]
    rows = store.query(f"SELECT scope, silenced FROM {store.table('alerts')} FINAL ORDER BY scope")
    assert [(r[0], bool(r[1])) for r in rows] == [
        (f"account:{ACCOUNT}", False),
        (f"number:{OUR_NUMBER}", True),
    ]
    _cli(settings, "unsilence", silence_id)
    assert orjson.loads(_cli(settings, "silences", "--format", "json")) == []


def test_the_seeds_rule_250_failed_calls_over_hours_are_two_alerts(
    settings: Settings, tmp_path: Path
) -> None:
    """Count, send, reset: 250 failed calls 20 s apart (83 minutes, no window holds 100)."""
    seed = settings.model_copy(
        update={"alert_every_failed_calls": 100, "call_failure_threshold": 100_000}
    )
    t0 = time.time() - 6000
    produce(
        seed,
        [call(f"CAc{i:030d}", "failed", at=t0 + 20 * i, from_=OUR_NUMBER) for i in range(250)],
    )
    worker = Stage("process", seed, tmp_path).start()
    try:
        wait_for(
            lambda: len(_alerts(seed)) >= 2,
            timeout=60,
            what=f"the count alerts; log:\n{worker.log()[-3000:]}",
        )
        time.sleep(3)  # a third would come now
        alerts = _alerts(seed)
    finally:
        assert worker.terminate() == 0, worker.log()[-3000:]
    assert [(a.type, a.scope, a.count, a.rule) for a in alerts] == [
        (AlertType.FAILED_CALLS_COUNT, f"account:{ACCOUNT}", 100, AlertRule.COUNT)
    ] * 2
    assert len({a.alert_id for a in alerts}) == 2
