"""A small campaign with known outcomes, written into the test's ClickHouse database.

Event rows go through the same mapping as the writer's (`sinks.clickhouse.rows`),
so their shape is the real one. Times are relative to `base`, a minute boundary
three to four minutes ago: recent enough that a message at `sent` is still waiting
for its receipt, old enough that every event is in the past.

SMS (campaign spring-sale):
  SM001 queued, sent, delivered                    -> delivered    (settles in minute 0)
  SM002 delivered twice (a provider retry)          -> delivered    (minute 0)
  SM003 undelivered 30003 (enriched via REST)       -> undelivered  (minute 0)
  SM004 failed 30007                                -> failed       (minute 0)
  SM005 delivered, then a late `sent`               -> delivered    (minute 1)
  SM006 MMS at sent                                 -> unconfirmed
  SM007 queued                                      -> queued (pending)
  SM008 sent 100 s after base                       -> sent (pending)
  SM009 sent two hours before base                  -> unconfirmed
  SM010 undelivered 30003, then a late `sent`       -> undelivered  (minute 1)
SMS (campaign fall-promo):
  SM101 delivered (minute 1), SM102 failed 21610 (minute 0), SM103 undelivered 30006 (minute 1)
Voice calls: CA001 completed 60 s MOS 4.5 with a recording, CA002 completed 120 s MOS 3.0,
  CA003 failed 13224 (twice), CA004 busy, CA005 no-answer, CA006 ringing, CA007 failed.
Inbound calls: CA101 completed 30 s MOS 4.0, CA102 completed 90 s MOS 2.5, CA103 failed.
Alerts: one sms_failures for campaign:spring-sale, one low_mos for the account.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from contract.alerts import (
    Alert,
    AlertType,
    ScopeType,
    fingerprint,
    make_alert_id,
    scope_key,
)
from contract.deadletters import DeadLetter, Reason, Stage
from contract.events import Event
from contract.kinds import CallbackKind
from contract.topics import Topic
from sinks.clickhouse.rows import dead_letter_row, event_row, json_rows
from sinks.clickhouse.schema import STAGING_COLUMNS
from sinks.clickhouse.store import Store

SENDER = "+15550000001"
ACCOUNT = "AC00000000000000000000000000000001"
CALL_CENTRE = "+15550009999"


def minute_base(now: float | None = None) -> float:
    now = time.time() if now is None else now
    return float(int(now // 60) * 60 - 180)


def to_number(sid: str) -> str:
    """SM003 -> +15551000003: each message or call has its own far-end number."""
    return "+1555100" + sid[-3:].zfill(4)


def sms(
    sid: str, status: str, at: float, campaign: str, *, code: str | None = None, media: int = 0
) -> Event:
    values: dict[str, Any] = {
        "message_sid": sid,
        "message_status": status,
        "error_code": code,
        "account_sid": ACCOUNT,
        "from": SENDER,
        "to": to_number(sid),
        "body": f"Hello from {campaign} ({sid})",
        "num_media": media,
        "num_segments": 1,
    }
    return Event(CallbackKind.SMS, sid, status, at, at, campaign, values, {"campaign": campaign})


def call(
    sid: str,
    status: str,
    at: float,
    *,
    seq: int | None = None,
    duration: int | None = None,
    mos: float | None = None,
    code: str | None = None,
    recording: str | None = None,
    inbound: bool = False,
) -> Event:
    values: dict[str, Any] = {
        "call_sid": sid,
        "call_status": status,
        "account_sid": ACCOUNT,
        "from": CALL_CENTRE if not inbound else to_number(sid),
        "to": to_number(sid) if not inbound else CALL_CENTRE,
        "timestamp": at,
        "call_duration": duration,
        "audio_in_mos": mos,
    }
    kind = CallbackKind.INBOUND_CALL if inbound else CallbackKind.VOICE
    if not inbound:
        values |= {
            "direction": "outbound-api",
            "sequence_number": seq,
            "error_code": code,
            "recording_url": recording,
        }
    return Event(kind, sid, status, at, at, "", values)


def events(base: float) -> list[Event]:
    b = base
    s, f = "spring-sale", "fall-promo"
    rec = "https://example.signalwire.com/recordings/RE001.wav"
    return [
        sms("SM001", "queued", b, s),
        sms("SM001", "sent", b + 1, s),
        sms("SM001", "delivered", b + 5, s),
        sms("SM002", "queued", b, s),
        sms("SM002", "sent", b + 1, s),
        sms("SM002", "delivered", b + 6, s),
        sms("SM002", "delivered", b + 7, s),
        sms("SM003", "queued", b, s),
        sms("SM003", "sent", b + 2, s),
        sms("SM003", "undelivered", b + 8, s, code="30003"),
        sms("SM004", "queued", b, s),
        sms("SM004", "failed", b + 3, s, code="30007"),
        sms("SM005", "delivered", b + 62, s),
        sms("SM005", "sent", b + 63, s),
        sms("SM006", "queued", b, s, media=1),
        sms("SM006", "sent", b + 4, s, media=1),
        sms("SM007", "queued", b + 10, s),
        sms("SM008", "queued", b + 100, s),
        sms("SM008", "sent", b + 101, s),
        sms("SM009", "queued", b - 7200, s),
        sms("SM009", "sent", b - 7199, s),
        sms("SM010", "undelivered", b + 65, s, code="30003"),
        sms("SM010", "sent", b + 66, s),
        sms("SM101", "sent", b + 20, f),
        sms("SM101", "delivered", b + 70, f),
        sms("SM102", "failed", b + 30, f, code="21610"),
        sms("SM103", "sent", b + 31, f),
        sms("SM103", "undelivered", b + 75, f, code="30006"),
        call("CA001", "initiated", b, seq=0),
        call("CA001", "ringing", b + 1, seq=1),
        call("CA001", "in-progress", b + 5, seq=2),
        call("CA001", "completed", b + 65, seq=3, duration=60, mos=4.5, recording=rec),
        call("CA002", "completed", b + 70, seq=0, duration=120, mos=3.0),
        call("CA003", "failed", b + 10, seq=0, code="13224"),
        call("CA003", "failed", b + 10, seq=0, code="13224"),  # provider retry
        call("CA004", "busy", b + 20, seq=0),
        call("CA005", "no-answer", b + 30, seq=0),
        call("CA006", "ringing", b + 40, seq=0),
        call("CA007", "failed", b + 50, seq=0),
        call("CA101", "completed", b + 15, duration=30, mos=4.0, inbound=True),
        call("CA102", "completed", b + 75, duration=90, mos=2.5, inbound=True),
        call("CA103", "failed", b + 80, inbound=True),
    ]


def alerts(base: float) -> list[Alert]:
    def alert(type_: AlertType, scope: str, at: float, count: int, threshold: float, value: float):
        return Alert(
            make_alert_id(fingerprint(type_, scope, "60s"), base), type_, scope, base, base + 60,
            count, threshold, value, at,
        )  # fmt: skip

    return [
        alert(
            AlertType.SMS_FAILURES, scope_key(ScopeType.CAMPAIGN, "spring-sale"), base + 70, 3, 3, 3
        ),
        alert(AlertType.LOW_MOS, scope_key(ScopeType.ACCOUNT, ACCOUNT), base + 90, 4, 3.5, 3.33),
    ]


def insert_events(store: Store, batch: list[Event]) -> None:
    """Through the writer's own mapping: each kind's staging table, whose view fills the
    event table."""
    by_table: dict[str, list[bytes]] = defaultdict(list)
    for event in batch:
        table, _, values = event_row(event.to_bytes())
        by_table[table].append(values)
    for table, rows in by_table.items():
        store.insert_json(table, STAGING_COLUMNS, b"\n".join(rows))


def insert_alerts(store: Store, batch: list[Alert]) -> None:
    columns = list(Alert.__dataclass_fields__)
    store.insert_json("alerts", columns, b"\n".join(a.to_bytes() for a in batch))


def letter(raw: bytes, reason: Reason, stage: Stage, topic: Topic, at: float) -> DeadLetter:
    return DeadLetter.of(
        raw,
        reason=reason,
        message=f"{reason} at {at}",
        stage=stage,
        topic=topic,
        partition=0,
        offset=int(at),
        key=None,
        sid=None,
        at=at,
    )


def insert_letters(store: Store, letters: list[DeadLetter]) -> None:
    """Through the dead-letter writer's own mapping."""
    rows = [dead_letter_row("")(d.to_bytes()) for d in letters]
    store.insert_json("dead_letters", rows[0][1], b"\n".join(values for _, _, values in rows))


def insert_enrichment(store: Store, base: float) -> None:
    """What the REST API said about SM003 (the only failed message enriched so far)."""
    row = {
        "message_sid": "SM003",
        "message_status": "undelivered",
        "error_code": "30003",
        "error_message": "Unreachable destination handset",
        "date_sent": base + 2,
        "to": to_number("SM003"),
        "from": SENDER,
        "body": "Hello from spring-sale (SM003)",
        "campaign": "spring-sale",
        "received_at": base + 8,
        "enriched_at": base + 9,
        "enrichment": "api",
    }
    store.insert_json("failed_messages", list(row), json_rows([row]))


def insert_windows(store: Store, base: float) -> None:
    delivery = [
        # (scope, delivered, undelivered, failed): the first window saw failures
        ("campaign:spring-sale", 2, 1, 1),
        ("campaign:fall-promo", 0, 0, 0),
    ]
    rows = [
        {
            "scope": scope,
            "window_s": 60,
            "window_start": base,
            "window_end": base + 60,
            "sent": d + u + fl,
            "delivered": d,
            "undelivered": u,
            "failed": fl,
            "unconfirmed": 0,
            "delivery_rate": d / (d + u + fl) if d + u + fl else None,
            "updated_at": base + 61,
        }
        for scope, d, u, fl in delivery
    ]
    store.insert_json("delivery_windows", list(rows[0]), json_rows(rows))
    calls = {
        "scope": f"account:{ACCOUNT}",
        "window_s": 60,
        "window_start": base,
        "window_end": base + 60,
        "calls": 6,
        "completed": 1,
        "failed": 2,
        "busy": 1,
        "no_answer": 1,
        "canceled": 0,
        "duration_s": 30,
        "mos_count": 1,
        "mos_sum": 4.0,
        "mos_mean": 4.0,
        "updated_at": base + 61,
    }
    store.insert_json("call_windows", list(calls), json_rows([calls]))


def insert_campaign(store: Store, base: float) -> None:
    insert_events(store, events(base))
    insert_alerts(store, alerts(base))
    insert_enrichment(store, base)
    insert_windows(store, base)
