"""Failure enrichment through the real SignalWire SDK against the local fake: each
failed or undelivered message is fetched once and kept in failed_messages, off the
event writer's path."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from contract.settings import Settings
from contract.topics import Topic
from sinks.clickhouse.rows import event_row
from sinks.clickhouse.store import Store
from sinks.clickhouse.writer import table_writer
from sinks.signalwire.enrich import enricher
from tests.fake_signalwire import FakeSignalWire
from tests.harness import Running, committed_total, produce, wait_for
from tests.sink_data import T0, records, sms, with_signalwire

pytestmark = pytest.mark.kafka

SENT_AT = datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC)
FAILED = {  # sid: (status in the callback, ErrorCode, the provider's error message)
    "SM" + "a" * 32: ("undelivered", "30003", "Unreachable destination handset"),
    "SM" + "b" * 32: ("failed", "30007", "Message filtered by the carrier"),
    "SM" + "c" * 32: ("undelivered", "30005", "Unknown destination handset"),
}


@pytest.fixture
def sw(fake: FakeSignalWire, topics: Settings) -> Settings:
    fake.reset()
    for sid, (status, code, message) in FAILED.items():
        fake.set_message(
            sid,
            status=status,
            error_code=int(code),
            error_message=message,
            to="+15550003333",
            from_="+15550001111",
            body=f"Spring sale for {sid[-4:]}",
            date_sent=SENT_AT,
        )
    # bodies kept for a while, as the seed's error tracker keeps them (the default stores none)
    return with_signalwire(topics, fake.base_url).model_copy(update={"retention_texts_days": 30})


def _events():
    events = [sms(f"SM{i:032x}", "delivered", T0 + i, campaign="spring") for i in range(20)]
    for n, (sid, (status, code, _)) in enumerate(FAILED.items()):
        events += [
            sms(sid, "sent", T0 + n, campaign="spring"),
            sms(sid, status, T0 + 10 + n, campaign="spring", error_code=code),
            sms(sid, status, T0 + 11 + n, campaign="spring", error_code=code),  # retried callback
        ]
    return events


def _fetches(fake: FakeSignalWire, sid: str | None = None) -> int:
    return sum(
        r.method == "GET" and "/Messages/" in r.path and (sid is None or sid in r.path)
        for r in fake.requests
    )


def _enriched(settings: Settings, n: int, group: str = "enrich") -> None:
    wait_for(
        lambda: committed_total(settings, settings.topic_prefix + group, Topic.EVENTS) == n,
        what=f"{n} events read by {group} and committed",
    )


def _rows(store: Store) -> dict[str, dict[str, object]]:
    rows = store.query_dicts(f"SELECT * FROM {store.table('failed_messages')} FINAL")
    return {str(r["message_sid"]): r for r in rows}


def test_failed_messages_are_enriched_once_with_the_providers_fields(
    fake: FakeSignalWire, sw: Settings, store: Store
) -> None:
    events = _events()
    produce(sw, Topic.EVENTS, records(events))
    with Running(enricher(sw, store, group=sw.topic_prefix + "enrich")):
        _enriched(sw, len(events))
    with Running(enricher(sw, store, group=sw.topic_prefix + "replay")):  # a replay
        _enriched(sw, len(events), group="replay")

    rows = _rows(store)
    assert set(rows) == set(FAILED)
    for sid, (status, code, message) in FAILED.items():
        row = rows[sid]
        assert (row["message_status"], row["error_code"], row["error_message"]) == (
            status,
            code,
            message,
        )
        assert row["date_sent"] == SENT_AT.replace(tzinfo=None)  # read back as naive UTC
        assert (row["to"], row["from"], row["body"]) == (
            "+15550003333",
            "+15550001111",
            f"Spring sale for {sid[-4:]}",
        )
        assert (row["campaign"], row["enrichment"]) == ("spring", "api")
        assert _fetches(fake, sid) == 1
    assert _fetches(fake) == 3


def test_server_errors_are_retried_and_unknown_messages_kept_from_the_callback(
    fake: FakeSignalWire, sw: Settings, store: Store
) -> None:
    unknown = "SM" + "d" * 32  # the provider has no such message: 404, not retried
    fake.fail_next(2, 500)
    events = [
        sms("SM" + "a" * 32, "undelivered", T0, error_code="30003"),
        sms(unknown, "failed", T0 + 1, error_code="30008", body="lost"),
    ]
    produce(sw, Topic.EVENTS, records(events))
    with Running(enricher(sw, store, group=sw.topic_prefix + "enrich")):
        _enriched(sw, 2)

    rows = _rows(store)
    assert rows["SM" + "a" * 32]["enrichment"] == "api"
    assert rows["SM" + "a" * 32]["error_message"] == "Unreachable destination handset"
    assert (rows[unknown]["enrichment"], rows[unknown]["error_message"]) == ("error", None)
    assert (rows[unknown]["error_code"], rows[unknown]["body"]) == ("30008", "lost")
    # the two 500s (whichever fetches drew them), then one answer each: the 404 is final
    assert _fetches(fake) == 4


def test_a_failing_api_never_holds_up_the_event_writer(
    fake: FakeSignalWire, sw: Settings, store: Store
) -> None:
    """The API answers 503 to everything: enrichment retries and commits nothing, the
    event writer meanwhile writes every event, and both stop promptly."""
    stuck = sw.model_copy(update={"rest_max_attempts": 1000})
    fake.fail_next(100_000, 503)
    events = _events()
    produce(stuck, Topic.EVENTS, records(events))
    writer = table_writer(
        stuck, store, Topic.EVENTS, group="events", name="events", mapper=event_row
    )
    with Running(enricher(stuck, store, group=stuck.topic_prefix + "enrich"), writer):
        wait_for(
            lambda: (
                committed_total(stuck, stuck.topic_prefix + "events", Topic.EVENTS) == len(events)
            ),
            what="the event writer's commit",
        )
        wait_for(lambda: _fetches(fake) >= 9, what="enrichment retrying")
        assert committed_total(stuck, stuck.topic_prefix + "enrich", Topic.EVENTS) == 0
    rows = store.query(f"SELECT count() FROM {store.table('sms_events')} FINAL")
    assert rows[0][0] == 26  # 20 delivered, 3 sent, 3 failed (retried callbacks collapse)
    assert _rows(store) == {}
    assert committed_total(stuck, stuck.topic_prefix + "enrich", Topic.EVENTS) == 0


def test_without_credentials_rows_come_from_the_callback_as_a_dry_run(
    fake: FakeSignalWire, topics: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    fake.reset()
    topics = topics.model_copy(update={"retention_texts_days": 30})
    events = _events()
    produce(topics, Topic.EVENTS, records(events))
    with (
        caplog.at_level(logging.INFO),
        Running(enricher(topics, store, group=topics.topic_prefix + "enrich")),
    ):
        _enriched(topics, len(events))

    assert fake.requests == []
    rows = _rows(store)
    assert {sid: (r["enrichment"], r["error_code"]) for sid, r in rows.items()} == {
        sid: ("dry_run", code) for sid, (_, code, _) in FAILED.items()
    }
    assert all(r["error_message"] is None and r["body"] == "Spring sale" for r in rows.values())
    dry = [r.getMessage() for r in caplog.records if "dry run" in r.getMessage()]
    assert all(any(sid in line for line in dry) for sid in FAILED)
