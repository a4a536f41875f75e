"""Dead letters end to end, with every stage a child process and the CLI as a user runs
it: letters are listed by `switchboard dead-letters list`, replayed by `switchboard
dead-letters replay` once their cause is gone, and what they hold counts exactly once,
however often it is replayed; a letter whose cause is still there is dead again, the
same letter."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from contract.alerts import Alert, AlertType, ScopeType, fingerprint, make_alert_id, scope_key
from contract.envelope import Envelope
from contract.kinds import CallbackKind
from contract.settings import Settings
from contract.topics import Topic
from contract.windows import CallWindow, DeliveryWindow
from tests.callbacks import call, recording, sms
from tests.fake_signalwire import FakeSignalWire
from tests.harness import (
    ROOT,
    Stage,
    chdb_rows,
    drained,
    group_lag,
    produce,
    settings_env,
    wait_for,
)
from tests.proc_traffic import latest_by, read_all
from tests.sink_data import with_signalwire

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FORWARD_FROM, FORWARD_TO = "+15550009999", "+15550008888"


@pytest.fixture
def settings(topics: Settings, fake: FakeSignalWire, tmp_path: Path) -> Settings:
    """The sink on its own embedded store (read back once it has stopped), SignalWire
    at the fake, forwards on, windows published often."""
    return with_signalwire(
        topics.model_copy(
            update={
                "clickhouse_url": f"chdb://{tmp_path / 'ch'}",
                "clickhouse_database": "switchboard",
                "metrics_interval_s": 0.5,
                "process_batch_wait_s": 0.05,
                "alert_report_wait_s": 0.0,
            }
        ),
        fake.base_url,
        forward_from=FORWARD_FROM,
        forward_to=FORWARD_TO,
    )


@pytest.fixture
def stages(settings: Settings, tmp_path: Path) -> Iterator[dict[str, Stage]]:
    started = {name: Stage(name, settings, tmp_path) for name in ("process", "sink")}
    yield started
    for stage in started.values():
        if stage.alive():
            assert stage.terminate() == 0, stage.log()[-3000:]


def cli(settings: Settings, *args: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "switchboard", *args],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def api(settings: Settings, path: str, **query: str) -> Any:
    """What the running sink's query API answers."""
    assert settings.api_token is not None
    request = urllib.request.Request(
        f"http://{settings.api_host}:{settings.api_port}{path}?{urllib.parse.urlencode(query)}",
        headers={"Authorization": f"Bearer {settings.api_token.get_secret_value()}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def letters(settings: Settings, **query: str) -> list[dict[str, Any]]:
    try:
        found: list[dict[str, Any]] = api(settings, "/api/dead-letters", **query)["letters"]
    except OSError:  # the sink's API is not up yet
        return []
    return found


def legacy_letter(envelope: Envelope, param: str, text: str) -> bytes:
    """What the intake wrote for a callback with an unreadable value before it kept them:
    such letters sit on callbacks.dead-letter in every deployment that upgrades."""
    envelope.params[param] = text
    reason = f"{param}={text!r} is not a valid number: could not convert"
    return orjson.dumps(
        {"kind": envelope.kind.value, "reason": reason, "raw": envelope.to_bytes().decode()}
    )


def windows(settings: Settings, topic: Topic, record: Any, scope: str) -> list[Any]:
    """The latest published figures of `scope`'s tumbling windows."""
    found = [record.from_bytes(m.value()) for m in read_all(settings, topic)]
    latest = latest_by(found, lambda w: (w.scope, w.window_s, w.window_start))
    return [
        w for w in latest.values() if w.scope == scope and w.window_s == settings.window_tumbling_s
    ]


def test_dead_lettered_callbacks_are_listed_replayed_and_counted_once(
    settings: Settings, stages: dict[str, Stage], fake: FakeSignalWire
) -> None:
    # Letters of the previous version: an SMS receipt, an inbound call and a completed
    # recording whose one unreadable value cost the whole callback. The upgrade to
    # lenient normalization removed that cause.
    delivered = sms("SMupgrade1", "delivered", campaign="upgrade")
    answered = call("CAupgrade1", "completed", at=delivered.received_at, duration=30, mos=4.1,
                    kind=CallbackKind.INBOUND_CALL, to="+15550003333")  # fmt: skip
    recorded = recording("REupgrade1", "completed", call_sid="CAupgrade1")
    produce(
        settings,
        Topic.CALLBACKS_DEAD_LETTER,
        [
            (None, legacy_letter(delivered, "NumMedia", "two")),
            (None, legacy_letter(answered, "AudioInMos", "N/A")),
            (None, legacy_letter(recorded, "RecordingDuration", "12s")),
        ],
    )
    # And callbacks this version dead-letters: no status, nothing to count. That cause
    # stays.
    statusless = [sms(f"SMnostatus{i}", "") for i in range(2)]
    produce(settings, Topic.CALLBACKS_SMS, [(e.sid, e.to_bytes()) for e in statusless])
    for stage in stages.values():
        stage.start()

    wait_for(
        lambda: len(letters(settings)) == 5, timeout=90, what="five dead letters in ClickHouse"
    )
    listed = json.loads(cli(settings, "dead-letters", "list", "--format", "json"))
    assert sorted((r["reason"], r["sid"], r["topic"]) for r in listed) == [
        ("no_status", "SMnostatus0", "callbacks.sms"),
        ("no_status", "SMnostatus1", "callbacks.sms"),
        ("unreadable_value", "CAupgrade1", "callbacks.inbound-call"),
        ("unreadable_value", "REupgrade1", "callbacks.recording"),
        ("unreadable_value", "SMupgrade1", "callbacks.sms"),
    ]
    table = cli(settings, "dead-letters", "list", "--reason", "no_status")
    assert "2 dead letters, state dead" in table and "MessageStatus is" in table
    csv = cli(settings, "dead-letters", "list", "--reason", "no_status", "--format", "csv")
    assert "SMnostatus0" in csv and "SMupgrade1" not in csv
    [summary] = api(settings, "/api/reports/summary")["rows"]
    assert (summary["dead_letters"], summary["dead_letters_by_reason"]) == (
        5,
        "unreadable_value 3, no_status 2",
    )
    assert "dead_letters_by_reason" in cli(settings, "report", "summary", "--format", "csv")

    def counted_once() -> bool:
        reports = {
            name: api(settings, f"/api/reports/{name}")["rows"] for name in ("delivery", "calls")
        }
        campaign = [(r["messages"], r["delivered"]) for r in reports["delivery"]
                    if r["campaign"] == "upgrade"]  # fmt: skip
        inbound = [(r["calls"], r["mos_calls"]) for r in reports["calls"]
                   if r["kind"] == "inbound-call"]  # fmt: skip
        sms_windows = windows(settings, Topic.METRICS_DELIVERY, DeliveryWindow, "campaign:upgrade")
        call_windows = windows(settings, Topic.METRICS_CALLS, CallWindow, "number:+15550003333")
        return (
            campaign == [(1, 1)]
            and inbound == [(1, 0)]
            and [(w.sent, w.delivered) for w in sms_windows] == [(1, 1)]
            and [(w.calls, w.completed, w.duration_s, w.mos_count) for w in call_windows]
            == [(1, 1, 30, 0)]
            and len(fake.sent_messages()) == 1
        )

    first_dead = {r["sid"]: r["dead_at"] for r in letters(settings, reason="no_status")}
    out = cli(settings, "dead-letters", "replay", "--reason", "unreadable_value")
    assert "replayed 3 dead letters" in out
    wait_for(counted_once, timeout=60, what="the replayed callbacks counted")
    wait_for(lambda: len(letters(settings, state="replayed")) == 3, what="three letters replayed")
    # Replayed again, every one, and the letters still dead (their cause remains):
    # nothing counts twice, nothing is sent twice; the statusless callbacks are dead
    # again, still one letter each.
    assert "replayed 3 dead letters" in cli(
        settings, "dead-letters", "replay", "--include-replayed", "--reason", "unreadable_value"
    )
    assert "replayed 2 dead letters" in cli(settings, "dead-letters", "replay")
    assert "replayed 0 dead letters" in cli(
        settings, "dead-letters", "replay", "--reason", "unreadable_value"
    )
    wait_for(lambda: drained(settings), timeout=60, what="the stages to drain")

    def dead_again() -> bool:
        now = {r["sid"]: r["dead_at"] for r in letters(settings, state="dead")}
        return now.keys() == first_dead.keys() and all(now[s] > first_dead[s] for s in now)

    wait_for(dead_again, what="the statusless callbacks dead-lettered again, one letter each")
    assert counted_once()
    [forward] = fake.sent_messages()
    assert "REupgrade1" in forward["Body"] and "CAupgrade1" in forward["Body"]

    for stage in stages.values():
        assert stage.terminate() == 0, stage.log()[-3000:]
    rows = chdb_rows(
        settings.clickhouse_dsn,
        settings.clickhouse_database,
        "SELECT message_sid, message_status, num_media, parse_errors "
        "FROM {db}.sms_events FINAL WHERE campaign = 'upgrade'",
    )
    assert rows == [
        {
            "message_sid": "SMupgrade1",
            "message_status": "delivered",
            "num_media": None,
            "parse_errors": {"NumMedia": "two"},
        }
    ]
    [letters_left] = chdb_rows(
        settings.clickhouse_dsn,
        settings.clickhouse_database,
        "SELECT count() AS n, countIf(state = 'dead') AS dead FROM {db}.dead_letters FINAL",
    )
    assert letters_left == {"n": 5, "dead": 2}


def test_an_alert_sms_refused_for_a_wrong_setting_is_sent_once_after_the_fix(
    settings: Settings, stages: dict[str, Stage], fake: FakeSignalWire
) -> None:
    """SWITCHBOARD_ALERT_TO lacks its country code: SignalWire refuses the alert's SMS
    (21211), the alert is dead-lettered; the setting is fixed, the sink restarted, the
    letter replayed (twice): one SMS, to the right number."""
    sink = stages["sink"]
    sink.settings = settings.model_copy(update={"alert_to": "5550007777"})
    sink.start()
    scope = scope_key(ScopeType.CAMPAIGN, "spring")
    start = 1_800_000_000.0
    alert = Alert(
        make_alert_id(fingerprint(AlertType.SMS_FAILURES, scope, "900s"), start),
        AlertType.SMS_FAILURES, scope, start, start + 900, 120, 100, 120, start + 600,
    )  # fmt: skip
    produce(settings, Topic.ALERTS, [(alert.alert_id, alert.to_bytes())])
    [dead] = wait_for(lambda: letters(settings), timeout=90, what="the refused alert's letter")
    assert (dead["reason"], dead["stage"], dead["topic"], dead["sid"]) == (
        "forward_rejected",
        "alert-dispatch",
        "alerts",
        alert.alert_id,
    )
    assert "21211" in dead["message"] or "not a valid phone number" in dead["message"]
    assert fake.sent_messages() == []

    assert sink.terminate() == 0, sink.log()[-3000:]
    sink.settings = settings.model_copy(update={"alert_to": "+15550007777"})
    sink.start()
    wait_for(lambda: letters(settings), timeout=60, what="the sink's API")
    assert "replayed 1 dead letters" in cli(settings, "dead-letters", "replay")
    wait_for(lambda: fake.sent_messages(), timeout=60, what="the alert's SMS")
    assert "replayed 1 dead letters" in cli(
        settings, "dead-letters", "replay", "--include-replayed"
    )
    wait_for(
        lambda: letters(settings, state="replayed") and drained_alerts(settings),
        what="the second replay handled",
    )
    [sent] = fake.sent_messages()
    assert sent["To"] == "+15550007777" and "sms_failures" in sent["Body"]
    [row] = api(settings, "/api/reports/alerts")["rows"]
    assert row["alert_id"] == alert.alert_id  # the replayed alert is one alert
    assert letters(settings, state="dead") == []


def drained_alerts(settings: Settings) -> bool:
    group = f"{settings.topic_prefix}switchboard-sink-alert-dispatch"
    return group_lag(settings, group, Topic.ALERTS) == 0
