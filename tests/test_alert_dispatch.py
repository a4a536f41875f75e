"""Alert dispatch: each alert on `alerts` becomes one SMS (through the real SDK, at the
fake) and one CSV of the failures in its scope and window, read from ClickHouse."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from contract.alerts import Alert, AlertType, fingerprint, make_alert_id
from contract.kafka import producer_config
from contract.kinds import CallbackKind
from contract.settings import Settings
from contract.topics import Topic
from runtime.consumer import ConsumerRuntime
from sinks.alerts import alert_dispatch_consumer, report_path
from sinks.clickhouse.rows import event_row
from sinks.clickhouse.store import Store
from sinks.clickhouse.writer import table_writer
from sinks.signalwire.enrich import enricher
from tests.fake_signalwire import FakeSignalWire
from tests.harness import Running, committed_total, produce, wait_for
from tests.sink_data import T0, event, records, sms, with_signalwire

pytestmark = pytest.mark.kafka

ALERT_TO, FORWARD_FROM = "+15550007777", "+15550009999"
NUMBER = "+15550004444"


@pytest.fixture
def sw(fake: FakeSignalWire, topics: Settings) -> Settings:
    fake.reset()
    # bodies kept, as the seed's tracker kept them in its CSV
    return with_signalwire(
        topics,
        fake.base_url,
        alert_to=ALERT_TO,
        forward_from=FORWARD_FROM,
        alert_report_wait_s=20,
        retention_texts_days=30,
    )


def _event_writer(settings: Settings, store: Store) -> ConsumerRuntime:
    return table_writer(
        settings, store, Topic.EVENTS, group="events", name="events", mapper=event_row
    )


def _dispatch(settings: Settings, store: Store):
    producer = Producer(producer_config(settings))
    return alert_dispatch_consumer(
        settings, store, producer, group=settings.topic_prefix + "alert-dispatch"
    )


def _dispatched(settings: Settings, n: int) -> None:
    wait_for(
        lambda: (
            committed_total(settings, settings.topic_prefix + "alert-dispatch", Topic.ALERTS) == n
        ),
        what=f"{n} alerts dispatched",
        timeout=60,
    )


def _csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_sms_failure_alert_is_one_sms_and_one_csv_of_its_window(
    fake: FakeSignalWire, sw: Settings, store: Store
) -> None:
    failed = {f"SM{i:032x}": ("undelivered" if i % 2 else "failed", f"3000{i}") for i in range(5)}
    for n, (sid, (status, code)) in enumerate(failed.items()):
        fake.set_message(
            sid, status=status, error_code=int(code), error_message=f"reason {n}", body=f"body {n}"
        )
    events = [sms(f"SM{100 + i:032x}", "delivered", T0 + i, campaign="spring") for i in range(10)]
    for n, (sid, (status, code)) in enumerate(failed.items()):
        events += [
            sms(sid, status, T0 + 60 * n, campaign="spring", error_code=code),
            sms(sid, status, T0 + 60 * n + 1, campaign="spring", error_code=code),  # a retry
        ]
    events += [
        sms("SM" + "e" * 32, "failed", T0 + 901, campaign="spring"),  # after the window
        sms("SM" + "f" * 32, "failed", T0 + 5, campaign="fall"),  # another campaign
    ]
    produce(sw, Topic.EVENTS, records(events))
    with Running(_event_writer(sw, store), enricher(sw, store, group=sw.topic_prefix + "enrich")):
        wait_for(
            lambda: (
                store.query(f"SELECT count() FROM {store.table('failed_messages')} FINAL")[0][0]
                == 7
            ),
            what="the failures enriched",
        )

    scope = "campaign:spring"
    alert = Alert(
        make_alert_id(fingerprint(AlertType.SMS_FAILURES, scope, "900s"), T0),
        AlertType.SMS_FAILURES,
        scope,
        T0,
        T0 + 900,
        count=5,
        threshold=5,
        value=5,
        raised_at=T0 + 300,
    )
    produce(sw, Topic.ALERTS, [(alert.alert_id, alert.to_bytes())] * 2)
    with Running(_dispatch(sw, store)):
        _dispatched(sw, 2)

    [sent] = fake.sent_messages()
    path = report_path(sw, alert)
    assert (sent["To"], sent["From"]) == (ALERT_TO, FORWARD_FROM)
    assert "sms_failures" in sent["Body"] and scope in sent["Body"] and path.name in sent["Body"]
    assert alert.alert_id in path.name and path.parent == sw.exports_path
    header, *rows = _csv(path)
    assert header == [
        "Message Sid",
        "Message Status",
        "Error Code",
        "Error Message",
        "Date Sent",
        "To",
        "From",
        "Body",
    ]
    assert [(r[0], r[1], r[2], r[3], r[5], r[6], r[7]) for r in rows] == [
        (sid, status, code, f"reason {n}", "+15550000002", "+15550000001", f"body {n}")
        for n, (sid, (status, code)) in enumerate(failed.items())
    ]
    [row] = store.query_dicts(f"SELECT * FROM {store.table('forwards')} FINAL")
    assert (row["forward_id"], row["kind"], row["state"]) == (alert.alert_id, "alert", "sent")


def test_call_failure_alert_waits_for_the_writer_and_lists_the_failed_calls(
    fake: FakeSignalWire, sw: Settings, store: Store
) -> None:
    """The alert arrives before the event writer has written its failures (the
    processors raise it as they stream in): the report waits until ClickHouse has them."""
    calls = [
        event(
            CallbackKind.VOICE,
            f"CA{i:032x}",
            "failed",
            T0 + 10 * i,
            to=NUMBER,
            **{"from": "+15550001111"},
            direction="outbound-api",
            recording_url=f"https://rec/{i}",
        )
        for i in range(2)
    ]
    calls += [
        event(CallbackKind.VOICE, "CA" + "9" * 32, "completed", T0 + 5, to=NUMBER),
        event(CallbackKind.VOICE, "CA" + "8" * 32, "failed", T0 + 5, to="+15550000000"),
        event(
            CallbackKind.INBOUND_CALL,
            "CA" + "7" * 32,
            "failed",
            T0 + 30,
            to=NUMBER,
            **{"from": "+15550002222"},
        ),
    ]
    scope = f"number:{NUMBER}"
    alert = Alert(
        make_alert_id(fingerprint(AlertType.CALL_FAILURES, scope, "900s"), T0),
        AlertType.CALL_FAILURES,
        scope,
        T0,
        T0 + 900,
        count=3,
        threshold=3,
        value=3,
        raised_at=T0 + 31,
    )
    produce(sw, Topic.ALERTS, [(alert.alert_id, alert.to_bytes())])
    with Running(_dispatch(sw, store)):
        time.sleep(2)  # the alert is being handled; no failure is in ClickHouse yet
        produce(sw, Topic.EVENTS, records(calls))
        with Running(_event_writer(sw, store)):
            _dispatched(sw, 1)

    header, *rows = _csv(report_path(sw, alert))
    assert header == [
        "Call SID",
        "Call Status",
        "Event Timestamp",
        "Call Direction",
        "To Number",
        "From Number",
        "Recording URL (if present)",
    ]
    assert [(r[0], r[1], r[3], r[4], r[5], r[6]) for r in rows] == [
        ("CA" + "0" * 32, "failed", "outbound-api", NUMBER, "+15550001111", "https://rec/0"),
        ("CA" + "0" * 31 + "1", "failed", "outbound-api", NUMBER, "+15550001111", "https://rec/1"),
        ("CA" + "7" * 32, "failed", "inbound", NUMBER, "+15550002222", ""),
    ]
    assert rows[0][2] == "Thu, 01 Jan 2026 00:00:00 +0000"  # the provider's own format
    [sent] = fake.sent_messages()
    assert "call_failures" in sent["Body"] and NUMBER in sent["Body"]


def test_low_mos_alert_without_alert_to_is_a_csv_of_the_calls_and_no_sms(
    fake: FakeSignalWire, sw: Settings, store: Store
) -> None:
    quiet = sw.model_copy(update={"alert_to": None})
    calls = [
        event(
            CallbackKind.INBOUND_CALL,
            f"CA{i:032x}",
            "completed",
            T0 + i,
            to=NUMBER,
            **{"from": "+15550001111"},
            call_duration=60 + i,
            audio_in_mos=mos,
        )
        for i, mos in enumerate([2.5, 3.0, 3.25])
    ]
    calls.append(event(CallbackKind.INBOUND_CALL, "CA" + "f" * 32, "completed", T0 + 9, to=NUMBER))
    produce(quiet, Topic.EVENTS, records(calls))
    scope = f"number:{NUMBER}"
    alert = Alert(
        make_alert_id(fingerprint(AlertType.LOW_MOS, scope, "900s"), T0),
        AlertType.LOW_MOS,
        scope,
        T0,
        T0 + 900,
        count=3,
        threshold=3.5,
        value=2.92,
        raised_at=T0 + 10,
    )
    produce(quiet, Topic.ALERTS, [(alert.alert_id, alert.to_bytes())])
    with Running(_event_writer(quiet, store), _dispatch(quiet, store)):
        _dispatched(quiet, 1)

    header, *rows = _csv(report_path(quiet, alert))
    assert header[-2:] == ["Call Duration(s)", "Audio in MOS"]
    assert [(r[0], r[5], r[6]) for r in rows] == [
        (f"CA{i:032x}", str(60 + i), mos) for i, mos in enumerate(["2.5", "3.0", "3.25"])
    ]
    assert fake.requests == []
