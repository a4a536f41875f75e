"""Personal data: retention as configured in every store, redaction before ClickHouse,
and `switchboard forget` removing a number from everywhere Switchboard keeps it (every
stage a child process, the CLI as a user runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import ConfigResource
from pydantic import SecretStr

from contract.kafka import admin, client_config, ensure_topics
from contract.privacy import digits, number_token
from contract.settings import Settings
from contract.topics import Topic, topic_name
from sinks.clickhouse.schema import migrate, ttl_expr
from sinks.clickhouse.store import Store
from sinks.privacy import prune_exports
from tests.callbacks import ACCOUNT
from tests.fake_signalwire import FakeSignalWire
from tests.harness import ROOT, Stage, chdb_rows, drained, post_form, settings_env, wait_for
from tests.sink_data import with_signalwire

SENDER, FORWARD_TO = "+15550001111", "+15550008888"
FORGOTTEN, OTHER, THIRD = "+15557770001", "+15557770002", "+15557770003"
TEXT = "Please call me back about order 88"


def cli(settings: Settings, *args: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "switchboard", *args],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout + run.stderr


def api(settings: Settings, path: str, **query: str) -> Any:
    assert settings.api_token is not None
    request = urllib.request.Request(
        f"http://{settings.api_host}:{settings.api_port}{path}?{urllib.parse.urlencode(query)}",
        headers={"Authorization": f"Bearer {settings.api_token.get_secret_value()}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def api_up(settings: Settings) -> bool:
    try:
        api(settings, "/api/reports/summary")
        return True
    except OSError:
        return False


def campaign() -> list[tuple[str, dict[str, str]]]:
    """(kind, form) of a small campaign: SMS to three recipients (one failed each for the
    first two, so an alert's CSV names them), a call to the first with a recording and a
    transcription (its From is the recipient), an inbound call from them, and a callback
    without a status (a dead letter)."""
    now = time.time()

    def sms(sid: str, to: str, status: str | None, code: str = "") -> tuple[str, dict[str, str]]:
        form = {
            "MessageSid": sid, "AccountSid": ACCOUNT, "From": SENDER, "To": to,
            "Body": f"Spring sale for {to}: 20% off", "NumMedia": "0", "NumSegments": "1",
            "ErrorCode": code,
        }  # fmt: skip
        if status is not None:
            form["MessageStatus"] = status
        return "sms", form

    def voice(sid: str, from_: str, to: str, kind: str = "voice") -> tuple[str, dict[str, str]]:
        return kind, {
            "CallSid": sid, "CallStatus": "completed", "AccountSid": ACCOUNT, "From": from_,
            "To": to, "Timestamp": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(now)),
            "CallDuration": "30", "AudioInMos": "4.2",
            **({"Direction": "outbound-api"} if kind == "voice" else {}),
        }  # fmt: skip

    return [
        sms("SMa1", FORGOTTEN, "queued"),
        sms("SMa1", FORGOTTEN, "delivered"),
        sms("SMa2", FORGOTTEN, "failed", "30007"),
        sms("SMb1", OTHER, "delivered"),
        sms("SMb2", OTHER, "failed", "30003"),
        sms("SMc1", THIRD, "sent"),
        sms("SMc1", THIRD, "delivered"),
        sms("SMa3", FORGOTTEN, None),  # no status: a dead letter
        voice("CAa1", SENDER, FORGOTTEN),
        voice("CAb1", SENDER, OTHER),
        (
            "recording",
            {
                "RecordingSid": "REa1",
                "RecordingStatus": "completed",
                "AccountSid": ACCOUNT,
                "CallSid": "CAa1",
                "RecordingUrl": "https://example.signalwire.com/rec/REa1",
                "RecordingDuration": "12",
            },
        ),  # fmt: skip
        (
            "transcription",
            {
                "TranscriptionSid": "TRa1",
                "TranscriptionStatus": "completed",
                "TranscriptionText": TEXT,
                "RecordingSid": "REa1",
                "AccountSid": ACCOUNT,
                "CallSid": "CAa1",
                "From": FORGOTTEN,
                "To": SENDER,
            },
        ),  # fmt: skip
        voice("CAa2", FORGOTTEN, SENDER, kind="inbound-call"),
    ]


@pytest.fixture
def pipeline_settings(topics: Settings, fake: FakeSignalWire, tmp_path: Path) -> Settings:
    """The sink on its own embedded store (read back once it has stopped), SignalWire at
    the fake, forwards on, an alert at two failed SMS, with its CSV written at once."""
    return with_signalwire(
        topics.model_copy(
            update={
                "clickhouse_url": f"chdb://{tmp_path / 'ch'}",
                "clickhouse_database": "switchboard",
                "metrics_interval_s": 0.5,
                "process_batch_wait_s": 0.05,
                "alert_report_wait_s": 5.0,
                "sms_failure_threshold": 2,
            }
        ),
        fake.base_url,
        forward_from=SENDER,
        forward_to=FORWARD_TO,
    )


@pytest.fixture
def stages(pipeline_settings: Settings, tmp_path: Path) -> Iterator[dict[str, Stage]]:
    started = {n: Stage(n, pipeline_settings, tmp_path) for n in ("ingest", "process", "sink")}
    for stage in started.values():
        stage.start()
    yield started
    for stage in started.values():
        if stage.alive():
            assert stage.terminate() == 0, stage.log()[-3000:]


def run_campaign(settings: Settings, stages: dict[str, Stage]) -> None:
    edge = f"http://127.0.0.1:{settings.ingest_port}/callbacks"
    for kind, form in campaign():
        url = f"{edge}/{kind}?campaign=spring"
        wait_for(
            lambda url=url, form=form: post_form(url, form) == 204,  # type: ignore[misc]
            timeout=60,
            what=f"a 204 for {form}; edge log:\n{stages['ingest'].log()[-2000:]}",
        )


def topic_records(settings: Settings) -> dict[str, list[bytes]]:
    """Every record (key and value) of every topic of the test's prefix, from the start."""
    consumer = Consumer(client_config(settings) | {"group.id": f"reader-{uuid.uuid4().hex}"})
    found: dict[str, list[bytes]] = {}
    try:
        for name, md in consumer.list_topics(timeout=10).topics.items():
            if not name.startswith(settings.topic_prefix):
                continue
            found[name] = []
            ends = {}
            for p in md.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                if high > low:
                    ends[p] = high
            if not ends:
                continue
            consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in ends])
            deadline = time.monotonic() + 30
            while ends and time.monotonic() < deadline:
                for msg in consumer.consume(1000, timeout=0.1):
                    if msg.error() is None:
                        found[name].append((msg.key() or b"") + b"|" + (msg.value() or b""))
                for tp in consumer.position([TopicPartition(name, p) for p in ends]):
                    if tp.offset >= ends[tp.partition]:
                        del ends[tp.partition]
            assert not ends, f"{name} not read to its end"
            consumer.unassign()
    finally:
        consumer.close()
    return found


def clickhouse_dump(settings: Settings) -> dict[str, str]:
    """Every row of every table of the (stopped) sink's store, as text; and the
    commands of its mutations."""
    dsn, db = settings.clickhouse_dsn, settings.clickhouse_database
    tables = chdb_rows(
        dsn, db, "SELECT name FROM system.tables WHERE database = '{db}' AND engine LIKE '%Tree'"
    )
    script = (
        "import sys, json, clickhouse_connect\n"
        "c = clickhouse_connect.get_client(dsn=sys.argv[1])\n"
        "out = {}\n"
        "for t in sys.argv[3:]:\n"
        "    r = c.query(f'SELECT * FROM {sys.argv[2]}.`{t}`')\n"
        "    out[t] = json.dumps([list(map(str, row)) for row in r.result_rows])\n"
        "r = c.query(f\"SELECT command FROM system.mutations WHERE database = '{sys.argv[2]}'\")\n"
        "out['system.mutations'] = json.dumps([row[0] for row in r.result_rows])\n"
        "print(json.dumps(out))\n"
    )
    names = [str(t["name"]) for t in tables]
    run = subprocess.run(
        [sys.executable, "-c", script, dsn, db, *names],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    dumped: dict[str, str] = json.loads(run.stdout)
    return dumped


@pytest.mark.kafka
@pytest.mark.slow
def test_forget_removes_a_number_from_every_store_and_leaves_the_others(
    pipeline_settings: Settings, stages: dict[str, Stage], fake: FakeSignalWire, tmp_path: Path
) -> None:
    settings = pipeline_settings
    needle = digits(FORGOTTEN)
    run_campaign(settings, stages)
    exports = settings.exports_path

    def settled() -> bool:
        rows = api(settings, "/api/reports/delivery")["rows"] if api_up(settings) else []
        return (
            drained(settings)
            and sum(r["messages"] for r in rows) == 5
            and any(p.suffix == ".csv" for p in exports.glob("*"))
            and len(fake.sent_messages()) >= 2
        )

    wait_for(settled, timeout=60, what="the campaign stored, its alert's CSV, the forwards")
    # the number really is in every kind of store before
    assert any(needle in r.decode(errors="replace") for r in topic_records(settings)[
        topic_name(Topic.EVENTS, settings.topic_prefix)])  # fmt: skip
    assert any(needle.encode() in p.read_bytes() for p in exports.glob("*.csv"))

    def figures(number: str) -> Any:
        return [
            api(settings, f"/api/reports/{name}", number=number) for name in ("delivery", "calls")
        ]

    before = {n: figures(n) for n in (OTHER, THIRD)}
    assert before[OTHER][0]["rows"] and before[THIRD][0]["rows"]

    unauthorized = urllib.request.Request(
        f"http://{settings.api_host}:{settings.api_port}/api/forget",
        data=json.dumps({"number": FORGOTTEN}).encode(),
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unauthorized, timeout=10)
    refused.value.close()  # the error holds the response and its socket
    assert refused.value.code == 401
    dry = json.loads(cli(settings, "forget", FORGOTTEN, "--dry-run", "--format", "json"))
    assert dry["clickhouse"]["sms_events"] == 3 and dry["dry_run"]
    assert figures(FORGOTTEN)[0]["rows"], "a dry run removed something"

    said = cli(settings, "forget", FORGOTTEN, "--format", "json")
    removed = json.loads(said)
    assert needle not in said and not removed["dry_run"]
    # its messages and calls, and what hangs off them: the call's recording (no number in
    # it), the forwards, the failed message's enrichment, the dead letter
    assert removed["clickhouse"] == dry["clickhouse"]
    assert removed["clickhouse"] | {"delivery_windows": 0} == {
        "sms_events": 3, "call_events": 1, "inbound_call_events": 1, "recording_events": 1,
        "transcription_events": 1, "forwards": 2, "failed_messages": 1, "dead_letters": 1,
        "delivery_windows": 0,
    }  # fmt: skip
    kafka = {n.removeprefix(settings.topic_prefix): t for n, t in removed["kafka"].items()}
    assert kafka["callbacks.sms"]["holding"] == 4 and kafka["callbacks.sms"]["deleted"] >= 4
    assert kafka["events"]["holding"] == 6 and kafka["forwards"]["holding"] == 1
    assert kafka["processors.sid-state"]["tombstones"] >= 5  # SMa1, SMa2, CAa1, CAa2, TRa1
    assert set(removed["exports"].values()) == {1}  # the alert CSVs' row of SMa2
    assert "nothing" in cli(settings, "forget", FORGOTTEN)  # idempotent
    assert {n: figures(n) for n in (OTHER, THIRD)} == before
    assert [f["rows"] for f in figures(FORGOTTEN)] == [[], []]
    for stage in stages.values():
        assert stage.terminate() == 0, stage.log()[-3000:]

    # no record read back from any of our topics holds it
    records = topic_records(settings)
    assert len(records) >= len(Topic)
    holding = {n: sum(needle.encode() in r for r in rs) for n, rs in records.items()}
    assert not any(holding.values()), holding
    others = records[topic_name(Topic.CALLBACKS_SMS, settings.topic_prefix)]
    # raw records before the number's last one went with it, the ones after stayed
    assert all(digits(OTHER).encode() not in r or b"SMb" in r for r in others)
    # no ClickHouse table, nor the mutations' text
    dumped = clickhouse_dump(settings)
    assert [t for t, text in dumped.items() if needle in text] == []
    assert digits(OTHER) in dumped["sms_events"] and digits(THIRD) in dumped["sms_events"]
    audit = json.loads(dumped["erasures"])
    assert len(audit) == 2  # the erasure and its idempotent repeat; no number in either
    # no export file, while the other recipient's row of the alert's CSV stays
    files = list(exports.glob("*"))
    assert files and not [p for p in files if needle.encode() in p.read_bytes()]
    assert any(digits(OTHER).encode() in p.read_bytes() for p in files)
    # no log line of any stage holds it, nor any other full number: they name SIDs
    logs = {s.name: s.log() for s in stages.values()}
    assert [name for name, text in logs.items() if needle in text] == []
    numbers = [digits(n) for n in (OTHER, THIRD, SENDER, FORWARD_TO)]
    assert [(name, n) for name, text in logs.items() for n in numbers if n in text] == []
    assert "SMa2" in logs["process"] + logs["sink"] + logs["ingest"]


@pytest.mark.kafka
def test_retention_is_in_force_as_configured_on_topics_tables_and_exports(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    configured = settings.model_copy(
        update={
            "retention_raw_topics_s": 5 * 3600,
            "retention_topics_s": 7 * 3600,
            "retention_events_days": 30,
            "retention_aggregates_days": 90,
            "retention_texts_days": 2,
            "retention_exports_days": 3,
        }
    )
    ensure_topics(configured)

    def retention(s: Settings) -> dict[str, str | None]:
        client = admin(s)
        names = [topic_name(t, s.topic_prefix) for t in Topic]
        futures = client.describe_configs(
            [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
        )
        out = {}
        for resource, future in futures.items():
            entry = future.result()["retention.ms"]
            out[resource.name.removeprefix(s.topic_prefix)] = (
                None if entry.is_default else entry.value
            )
        return out

    found = retention(configured)
    assert found["callbacks.sms"] == found["callbacks.inbound-call"] == str(5 * 3600_000)
    assert found["events"] == found["forwards"] == found["metrics.calls"] == str(7 * 3600_000)
    assert found["callbacks.dead-letter"] == str(7 * 3600_000)
    assert found["processors.sid-state"] is None  # compacted: latest per key, tombstones
    # a topic made before a change of the setting gets the new retention at the next start
    changed = configured.model_copy(update={"retention_raw_topics_s": 2 * 86400})
    ensure_topics(changed)
    wait_for(
        lambda: retention(changed)["callbacks.voice"] == str(2 * 86400_000),
        timeout=10,
        what="the altered retention",
    )

    def created(table: str) -> str:
        return str(store.query(f"SHOW CREATE TABLE {store.table(table)}")[0][0])

    migrate(store, configured)
    for table, column, days in (
        ("sms_events", "received_at", 30),
        ("transcription_events", "received_at", 30),
        ("forwards", "requested_at", 30),
        ("dead_letters", "dead_at", 30),
        ("delivery_windows", "window_start", 90),
        ("alerts", "raised_at", 90),
    ):
        assert f"TTL {ttl_expr(column, days)}" in created(table), created(table)
    assert f"`body` Nullable(String) TTL {ttl_expr('received_at', 2)}" in created("sms_events")
    text = created("transcription_events")
    assert f"`transcription_text` Nullable(String) TTL {ttl_expr('received_at', 2)}" in text
    # changed settings reach the existing tables; texts not stored any more: no column TTL
    migrate(
        store,
        configured.model_copy(update={"retention_events_days": 10, "retention_texts_days": 0}),
    )
    assert f"TTL {ttl_expr('received_at', 10)}" in created("call_events")
    assert "`body` Nullable(String) TTL" not in created("sms_events")
    listed = store.query(
        "SELECT name FROM system.tables WHERE database = {db:String} "
        "AND create_table_query LIKE '%TTL toDateTime%'",
        {"db": store.database},
    )
    assert len(listed) == 11  # five event tables, failed messages, forwards, dead letters,
    # two window tables, alerts

    shown = {
        row["what"].removeprefix(configured.topic_prefix): row
        for row in json.loads(cli(configured, "retention", "--format", "json"))
    }
    # the settings, and what the broker holds (changed above, by other settings)
    assert (shown["callbacks.sms"]["kept"], shown["callbacks.sms"]["on the broker"]) == (
        "5 hours",
        "2 days",
    )
    assert shown["events"]["kept"] == "7 hours"
    assert shown["sms_events"]["kept"] == "30 days after received_at; body: 2 days"

    exports = configured.exports_path
    exports.mkdir(parents=True, exist_ok=True)
    old, new = exports / "alert-old.csv", exports / "alert-new.csv"
    old.write_text("a\n")
    new.write_text("b\n")
    os.utime(old, (time.time() - 4 * 86400,) * 2)
    assert prune_exports(configured) == [old] and new.exists()


@pytest.mark.kafka
@pytest.mark.slow
def test_with_redaction_no_body_or_transcription_is_stored_and_forwards_still_carry_them(
    pipeline_settings: Settings, fake: FakeSignalWire, tmp_path: Path
) -> None:
    settings = pipeline_settings.model_copy(
        update={"hash_numbers": True, "number_hash_key": SecretStr("k" * 32)}
    )
    started = [Stage(n, settings, tmp_path).start() for n in ("ingest", "process", "sink")]
    try:
        run_campaign(settings, {s.name: s for s in started})
        wait_for(
            lambda: drained(settings) and len(fake.sent_messages()) == 2 and api_up(settings),
            timeout=60,
            what="the campaign handled and both forwards sent",
        )
        # per-number reports still group, the filter hashed as the rows are
        wait_for(
            lambda: (
                [
                    r["messages"]
                    for r in api(settings, "/api/reports/delivery", number=OTHER)["rows"]
                ]
                == [2]
            ),
            timeout=30,
            what="the other recipient's two messages",
        )
    finally:
        for stage in started:
            assert stage.terminate() == 0, stage.log()[-3000:]

    sent = {m["Body"] for m in fake.sent_messages()}
    [transcribed] = [b for b in sent if TEXT in b]
    assert FORGOTTEN in transcribed and "CAa1" in transcribed  # what the template asks for
    assert any("https://example.signalwire.com/rec/REa1" in b for b in sent)

    dumped = clickhouse_dump(settings)
    event_tables = ("sms_events", "call_events", "transcription_events", "inbound_call_events")
    for table in (*event_tables, "forwards", "failed_messages"):
        assert TEXT not in dumped[table] and "Spring sale" not in dumped[table], table
        for number in (FORGOTTEN, OTHER, THIRD):
            assert digits(number) not in dumped[table], (table, number)
    key = b"k" * 32
    assert number_token(OTHER, key) in dumped["sms_events"]
    assert number_token(FORGOTTEN, key) in dumped["transcription_events"]
    rows = chdb_rows(
        settings.clickhouse_dsn,
        settings.clickhouse_database,
        "SELECT count() AS n FROM {db}.sms_events WHERE body IS NOT NULL",
    )
    assert rows == [{"n": 0}]
