"""Each report against the known campaign of tests/scenario.py, with exact numbers."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from contract.alerts import Alert, AlertState, AlertType, fingerprint, make_alert_id
from contract.deadletters import Reason, Stage
from contract.topics import Topic
from query.deadletters import LetterFilter, find_letters
from query.reports import REPORTS, Filters, run_report
from sinks.clickhouse.failures import FAILED_MESSAGES, in_window, window_query
from sinks.clickhouse.rows import json_rows
from sinks.clickhouse.store import Store
from sinks.signalwire.dispatch import FORWARD_COLUMNS
from tests import scenario
from tests.callbacks import sms as sms_envelope
from tests.sink_data import T0, sms


@pytest.fixture
def base(store: Store) -> float:
    base = scenario.minute_base()
    scenario.insert_campaign(store, base)
    return base


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


def test_delivery_counts_each_message_once_by_its_final_state(store: Store, base: float) -> None:
    rows = run_report(store, "delivery", Filters())
    assert rows == [
        {
            "campaign": "fall-promo",
            "messages": 3,
            "delivered": 1,
            "undelivered": 1,
            "failed": 1,
            "unconfirmed": 0,
            "pending": 0,
            "delivery_rate": 0.3333,
            "not_counted": 0,
            "other": 0,
        },
        {
            "campaign": "spring-sale",
            "messages": 10,
            "delivered": 3,
            "undelivered": 2,
            "failed": 1,
            "unconfirmed": 2,
            "pending": 2,
            "delivery_rate": 0.5,
            "not_counted": 0,
            "other": 0,
        },
    ]


def test_every_status_of_every_format_has_its_place_in_the_delivery_report(store: Store) -> None:
    """read and partially_delivered are delivered, invalid failed, canceled outside the
    rate, initiated/accepted/scheduled pending, and an unknown status apart as other;
    a later lower-ranked status never moves a message back."""
    at = time.time() - 60
    finals = {
        "SM1": "read",
        "SM2": "partially_delivered",
        "SM3": "invalid",
        "SM4": "canceled",
        "SM5": "initiated",
        "SM6": "accepted",
        "SM7": "scheduled",
        "SM8": "carrier_wobble",
        "SM9": "undelivered",
    }
    batch = [sms(sid, status, at, campaign="all") for sid, status in finals.items()]
    batch += [
        sms("SM1", "sent", at + 1, campaign="all"),
        sms("SM3", "queued", at + 1, campaign="all"),
    ]
    scenario.insert_events(store, batch)
    [row] = run_report(store, "delivery", Filters())
    assert row == {
        "campaign": "all",
        "messages": 9,
        "delivered": 2,
        "undelivered": 1,
        "failed": 1,
        "unconfirmed": 0,
        "pending": 3,
        "delivery_rate": 0.5,
        "not_counted": 1,
        "other": 1,
    }
    [rate] = run_report(store, "delivery-rate", Filters(bucket_s=3600))
    assert (rate["delivered"], rate["undelivered"], rate["failed"]) == (2, 1, 1)


def test_delivery_filters_by_campaign_number_and_time(store: Store, base: float) -> None:
    [fall] = run_report(store, "delivery", Filters(campaign="fall-promo"))
    assert (fall["campaign"], fall["messages"]) == ("fall-promo", 3)

    [one] = run_report(store, "delivery", Filters(number=scenario.to_number("SM003")))
    assert (one["messages"], one["undelivered"], one["delivery_rate"]) == (1, 1, 0.0)

    # From minute 1 on: SM005, SM008, SM010 of spring-sale; SM101, SM103 of fall-promo.
    since = datetime.fromtimestamp(base + 60, UTC)  # aware times are converted to UTC
    late = {r["campaign"]: r for r in run_report(store, "delivery", Filters(since=since))}
    assert late["spring-sale"]["messages"] == 3
    assert late["spring-sale"]["delivered"] == 1
    assert late["spring-sale"]["undelivered"] == 1
    assert late["spring-sale"]["pending"] == 1
    assert (late["fall-promo"]["messages"], late["fall-promo"]["delivery_rate"]) == (2, 0.5)

    assert run_report(store, "delivery", Filters(until=_at(base - 7300))) == []


def test_summary_is_the_status_funnel_and_headline_figures(store: Store, base: float) -> None:
    assert run_report(store, "summary", Filters()) == [
        {
            "messages": 13,
            "queued": 1,
            "sent": 1,
            "delivered": 4,
            "undelivered": 3,
            "failed": 2,
            "unconfirmed": 2,
            "delivery_rate": 0.4444,
            "calls": 10,
            "minutes": 5.0,
            "avg_mos": 3.5,
            "alerts": 2,
            "unknown_statuses": 0,
            "dead_letters": 0,
            "dead_letters_by_reason": "",
            "failed_sends": 0,
            "failed_sends_by_kind": "",
        }
    ]
    [spring] = run_report(store, "summary", Filters(campaign="spring-sale"))
    assert (spring["messages"], spring["alerts"], spring["calls"]) == (10, 1, 0)


def test_sends_given_up_are_counted_by_kind(store: Store, base: float) -> None:
    """An SMS or alert notification that was refused or failed every try is `dead` in
    `forwards`: the summary (and so the dashboard) counts them by kind, in the period."""
    rows = [
        {"forward_id": fid, "kind": kind, "to": "+15550001111", "from": "+15550002222",
         "body": "b", "call_sid": None, "state": state, "provider_sid": None, "attempts": 8,
         "error": None, "requested_at": at, "updated_at": at}
        for fid, kind, state, at in [
            ("AL1-webhook", "alert_webhook", "dead", base + 1),
            ("AL2-webhook", "alert_webhook", "dead", base + 2),
            ("RE1", "recording", "dead", base + 3),
            ("RE2", "recording", "sent", base + 4),
            ("RE3", "recording", "dead", base - 86_400 * 30),  # before the period
        ]
    ]  # fmt: skip
    store.insert_json("forwards", FORWARD_COLUMNS, json_rows(rows))
    since = datetime.fromtimestamp(base - 3600, UTC)
    [summary] = run_report(store, "summary", Filters(since=since))
    assert (summary["failed_sends"], summary["failed_sends_by_kind"]) == (
        3,
        "alert_webhook 2, recording 1",
    )


def test_delivery_rate_over_time_per_campaign(store: Store, base: float) -> None:
    rows = run_report(store, "delivery-rate", Filters(bucket_s=60))
    m0, m1 = _at(base), _at(base + 60)
    assert rows == [
        {"bucket_start": m0, "campaign": "fall-promo", "delivered": 0, "undelivered": 0,
         "failed": 1, "delivery_rate": 0.0},
        {"bucket_start": m0, "campaign": "spring-sale", "delivered": 2, "undelivered": 1,
         "failed": 1, "delivery_rate": 0.5},
        {"bucket_start": m1, "campaign": "fall-promo", "delivered": 1, "undelivered": 1,
         "failed": 0, "delivery_rate": 0.5},
        {"bucket_start": m1, "campaign": "spring-sale", "delivered": 1, "undelivered": 1,
         "failed": 0, "delivery_rate": 0.5},
    ]  # fmt: skip


def test_calls_report_has_totals_minutes_and_mos(store: Store, base: float) -> None:
    rows = run_report(store, "calls", Filters())
    assert rows == [
        {"kind": "inbound-call", "campaign": "", "calls": 3, "completed": 2, "failed": 1,
         "busy": 0, "no_answer": 0, "canceled": 0, "in_progress": 0, "minutes": 2.0,
         "mos_calls": 2, "avg_mos": 3.25},
        {"kind": "voice", "campaign": "", "calls": 7, "completed": 2, "failed": 2,
         "busy": 1, "no_answer": 1, "canceled": 0, "in_progress": 1, "minutes": 3.0,
         "mos_calls": 2, "avg_mos": 3.75},
    ]  # fmt: skip
    [inbound] = run_report(store, "calls", Filters(number=scenario.to_number("CA102")))
    assert (inbound["calls"], inbound["minutes"], inbound["avg_mos"]) == (1, 1.5, 2.5)


def test_failures_are_top_error_codes_with_their_meaning(store: Store, base: float) -> None:
    rows = run_report(store, "failures", Filters())
    assert [(r["kind"], r["error_code"], r["meaning"], r["failures"]) for r in rows] == [
        ("sms", "30003", "unreachable handset", 2),
        ("inbound-call", "", "", 1),
        ("sms", "21610", "recipient opted out", 1),
        ("sms", "30006", "landline or unreachable carrier", 1),
        ("sms", "30007", "carrier filtered", 1),
        ("voice", "", "", 1),
        ("voice", "13224", "invalid dial number", 1),
    ]
    assert rows[0] == {
        "kind": "sms",
        "error_code": "30003",
        "meaning": "unreachable handset",
        "failures": 2,
        "failed": 0,
        "undelivered": 2,
        "share_pct": 25.0,
    }
    assert [r["error_code"] for r in run_report(store, "failures", Filters(limit=1))] == ["30003"]


def test_mos_over_time(store: Store, base: float) -> None:
    rows = run_report(store, "mos", Filters(bucket_s=60))
    assert rows == [
        {"bucket_start": _at(base), "calls": 1, "avg_mos": 4.0, "min_mos": 4.0,
         "max_mos": 4.0, "below_floor": 0},
        {"bucket_start": _at(base + 60), "calls": 3, "avg_mos": 3.33, "min_mos": 2.5,
         "max_mos": 4.5, "below_floor": 2},
    ]  # fmt: skip


def test_alerts_and_failure_windows(store: Store, base: float) -> None:
    alerts = run_report(store, "alerts", Filters())
    assert [(a["type"], a["scope"], a["count"]) for a in alerts] == [
        ("low_mos", f"account:{scenario.ACCOUNT}", 4),
        ("sms_failures", "campaign:spring-sale", 3),
    ]
    assert alerts[0]["raised_at"] == _at(base + 90)
    [spring] = run_report(store, "alerts", Filters(campaign="spring-sale"))
    assert spring["type"] == "sms_failures"

    windows = run_report(store, "failure-windows", Filters())
    figures = [
        (w["kind"], w["scope"], w["failures"], w["total"], w["failure_pct"]) for w in windows
    ]
    assert figures == [
        ("calls", f"account:{scenario.ACCOUNT}", 2, 6, 33.33),
        ("sms", "campaign:spring-sale", 2, 4, 50.0),
    ]  # fmt: skip


def test_reports_filter_by_account(store: Store, base: float) -> None:
    other = "AC" + "9" * 32
    agency = scenario.sms("SM900", "failed", base + 30, "fall-promo", code="30007")
    agency.values["account_sid"] = other
    scenario.insert_events(store, [agency])

    [mine] = run_report(store, "delivery", Filters(account=other))
    assert (mine["campaign"], mine["messages"], mine["failed"]) == ("fall-promo", 1, 1)
    ours = run_report(store, "delivery", Filters(account=scenario.ACCOUNT))
    assert [(r["campaign"], r["messages"]) for r in ours] == [
        ("fall-promo", 3),
        ("spring-sale", 10),
    ]
    # Alerts and windows about an account have its scope; the others are about no account.
    alerts = run_report(store, "alerts", Filters(account=scenario.ACCOUNT))
    assert [(a["type"], a["scope"]) for a in alerts] == [("low_mos", f"account:{scenario.ACCOUNT}")]
    assert run_report(store, "alerts", Filters(account=other)) == []


def test_a_replayed_campaign_counts_once(store: Store, base: float) -> None:
    def reports() -> dict[str, list[dict[str, Any]]]:
        # how long an alert has fired grows with the clock, not with the data
        return {
            name: [{k: v for k, v in row.items() if k != "firing_for_s"} for row in rows]
            for name in REPORTS
            for rows in [run_report(store, name, Filters())]
        }

    before = reports()
    scenario.insert_campaign(store, base)  # every callback, alert and window again
    assert reports() == before


def test_unknown_statuses_and_parameters_unreadable_values_and_dead_letters_are_shown(
    store: Store, base: float
) -> None:
    held = sms("SM900", "carrier-held", base + 5, campaign="spring-sale", num_media=None)
    held = dataclasses.replace(
        held, extra={"SmsStatus": "carrier-held"}, parse_errors={"NumMedia": "two"}
    )
    scenario.insert_events(store, [held])
    statusless = sms_envelope("SM901", "", at=base + 6, campaign="spring-sale").to_bytes()
    letters = [
        scenario.letter(statusless, Reason.NO_STATUS, Stage.INTAKE, Topic.CALLBACKS_SMS, base + 7),
        scenario.letter(b"{}", Reason.FORWARD_REJECTED, Stage.FORWARDS, Topic.FORWARDS, base + 8),
        scenario.letter(b"[]", Reason.NO_STATUS, Stage.INTAKE, Topic.CALLBACKS_VOICE, base + 9),
    ]
    replayed = letters[2].replayed(at=base + 10)
    scenario.insert_letters(store, [*letters, replayed])

    summary = run_report(store, "summary", Filters())[0]
    assert (summary["messages"], summary["unknown_statuses"]) == (14, 1)
    assert (summary["dead_letters"], summary["dead_letters_by_reason"]) == (
        2,
        "no_status 1, forward_rejected 1",
    )
    spring = run_report(store, "summary", Filters(campaign="spring-sale"))[0]
    assert (spring["unknown_statuses"], spring["dead_letters"]) == (1, 1)
    by_reason = run_report(store, "dead-letters", Filters())
    assert [(r["reason"], r["topic"], r["dead"], r["replayed"]) for r in by_reason] == [
        ("forward_rejected", "forwards", 1, 0),
        ("no_status", "callbacks.sms", 1, 0),
        ("no_status", "callbacks.voice", 0, 1),
    ]
    params = run_report(store, "params", Filters())
    assert [
        (r["kind"], r["parameter"], r["problem"], r["callbacks"], r["example"]) for r in params
    ] == [
        ("sms", "MessageStatus", "unknown status", 1, "carrier-held"),
        ("sms", "NumMedia", "unreadable value", 1, "two"),
        ("sms", "SmsStatus", "unknown parameter", 1, "carrier-held"),
    ]
    # the letters themselves, raw record included: the newest first, or paged by id
    newest = find_letters(store, LetterFilter(reason="no_status"))
    assert newest == [replayed, letters[0]]
    dead = find_letters(store, LetterFilter(state="dead", after=""))
    assert dead == sorted(letters[:2], key=lambda d: d.letter_id)
    assert {d.body() for d in dead} == {b"{}", statusless}


def test_filters_are_parameters_not_sql(store: Store, base: float) -> None:
    hostile = "x' OR 1=1 --"
    assert run_report(store, "delivery", Filters(campaign=hostile)) == []
    assert run_report(store, "alerts", Filters(number=hostile)) == []


def test_an_alert_report_reads_only_what_was_received_since_its_window(store: Store) -> None:
    """The event tables are partitioned by received_at: the report of an alert skips
    the parts of older callbacks instead of reading the whole table."""
    start = T0 + 2 * 3600  # its window; last month's callbacks are another partition
    old = [sms(f"SM{i:032x}", "failed", T0 - 86400 + i, campaign="spring") for i in range(50)]
    recent = [sms(f"SM{100 + i:032x}", "failed", start + i, campaign="spring") for i in range(3)]
    scenario.insert_events(store, old)
    scenario.insert_events(store, recent)

    window: dict[str, Any] = {"scope": "campaign:spring", "start": start, "end": start + 900}
    assert [row[0] for row in in_window(store, FAILED_MESSAGES, **window)] == [
        e.sid for e in recent
    ]
    sql, params = window_query(store, FAILED_MESSAGES, **window)
    estimate = store.query(f"EXPLAIN ESTIMATE {sql}", params)
    assert [(table, rows) for _, table, _, rows, _ in estimate if table == "sms_events"] == [
        ("sms_events", len(recent))
    ]


def test_firing_shows_what_fires_now_and_for_how_long(store: Store) -> None:
    """Of two alerts that fired, the one resolved since is gone; the other shows its
    latest notification (a repeat) and how long it has been firing."""
    now = time.time()

    def note(scope: str, state: AlertState, at: float, repeat: int = 0) -> Alert:
        fp = fingerprint(AlertType.CALL_FAILURES, scope, "900s")
        return Alert(
            make_alert_id(fp, now - 7200, state, repeat), AlertType.CALL_FAILURES, scope,
            at - 900, at, 120, 100, 120 + repeat, at, fp, state, now - 7200, repeat,
        )  # fmt: skip

    scenario.insert_alerts(
        store,
        [
            note("campaign:over", AlertState.FIRING, now - 7000),
            note("campaign:over", AlertState.RESOLVED, now - 3000),
            note("campaign:on", AlertState.FIRING, now - 7000),
            note("campaign:on", AlertState.FIRING, now - 3400, repeat=1),
        ],
    )
    [firing] = run_report(store, "firing", Filters())
    assert (firing["scope"], firing["value"], firing["silenced"]) == ("campaign:on", 121, False)
    assert 7199 <= firing["firing_for_s"] <= 7200 + 60
    states = [(a["scope"], a["state"]) for a in run_report(store, "alerts", Filters())]
    assert sorted(states) == [
        ("campaign:on", "firing"),
        ("campaign:on", "firing"),
        ("campaign:over", "firing"),
        ("campaign:over", "resolved"),
    ]
