"""The failures behind an alert, with the seed's CSV columns: failed and undelivered
messages (the SMS tracker's table, with what enrichment fetched from the provider where
it has run), failed calls (the call tracker's), and the calls whose MOS a low-MOS alert
averaged (the inbound call tracker's).

Rows are one per SID, read `FINAL`, in the alert's scope and window of event time
(the time the processors window by). Filters are query parameters.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from contract.alerts import AlertType
from sinks.clickhouse.store import Store

_IN_SCOPE_AND_WINDOW = """
    event_time >= toDateTime64({start:Float64}, 3, 'UTC')
    AND event_time < toDateTime64({end:Float64}, 3, 'UTC')
    AND multiIf(
        {scope_type:String} = 'campaign', campaign = {scope_value:String},
        {scope_type:String} = 'number',
            `from` = {scope_value:String} OR `to` = {scope_value:String},
        {scope_type:String} = 'account', account_sid = {scope_value:String},
        1)
"""


@dataclass(frozen=True, slots=True)
class FailureReport:
    columns: tuple[str, ...]  # the seed's column names, in the SELECT's order
    sql: str


FAILED_MESSAGES_SQL = f"""
    SELECT e.message_sid AS `Message Sid`, e.status AS `Message Status`,
           e.error_code AS `Error Code`, f.error_message AS `Error Message`,
           f.date_sent AS `Date Sent`,
           if(empty(f.`to`), e.to_number, f.`to`) AS `To`,
           if(empty(f.`from`), e.from_number, f.`from`) AS `From`,
           ifNull(f.body, e.sms_body) AS `Body`
    FROM (
        SELECT message_sid,
               argMin(message_status, received_at) AS status,
               argMin(error_code, received_at) AS error_code,
               argMin(`to`, received_at) AS to_number,
               argMin(`from`, received_at) AS from_number,
               argMin(body, received_at) AS sms_body,
               min(event_time) AS failed_at
        FROM {{db}}.sms_events FINAL
        WHERE message_status IN ('failed', 'undelivered') AND {_IN_SCOPE_AND_WINDOW}
        GROUP BY message_sid
    ) AS e
    LEFT JOIN (
        SELECT message_sid, error_message, date_sent, `to`, `from`, body
        FROM {{db}}.failed_messages FINAL
    ) AS f ON e.message_sid = f.message_sid
    ORDER BY e.failed_at, e.message_sid
"""

# Voice status callbacks and inbound-call callbacks both report calls.
_CALLS = f"""
    SELECT call_sid, call_status, status_rank, ifNull(`timestamp`, event_time) AS at,
           direction, `to`, `from`, recording_url, call_duration, audio_in_mos
    FROM {{db}}.call_events FINAL WHERE {{where}} AND {_IN_SCOPE_AND_WINDOW}
    UNION ALL
    SELECT call_sid, call_status, status_rank, ifNull(`timestamp`, event_time) AS at,
           'inbound' AS direction, `to`, `from`, NULL AS recording_url, call_duration,
           audio_in_mos
    FROM {{db}}.inbound_call_events FINAL WHERE {{where}} AND {_IN_SCOPE_AND_WINDOW}
"""

FAILED_CALLS_SQL = f"""
    SELECT call_sid AS `Call SID`, any(call_status) AS `Call Status`,
           min(at) AS `Event Timestamp`, argMin(direction, at) AS `Call Direction`,
           argMin(`to`, at) AS `To Number`, argMin(`from`, at) AS `From Number`,
           max(recording_url) AS `Recording URL`
    FROM ({_CALLS.replace("{where}", "call_status = 'failed'")})
    GROUP BY call_sid
    ORDER BY `Event Timestamp`, `Call SID`
"""

MOS_CALLS_SQL = f"""
    SELECT call_sid AS `Call SID`, argMax(call_status, status_rank) AS `Call Status`,
           max(at) AS `Event Timestamp`, argMin(`to`, at) AS `To Number`,
           argMin(`from`, at) AS `From Number`, max(call_duration) AS `Call Duration(s)`,
           max(audio_in_mos) AS `Audio in MOS`
    FROM ({_CALLS.replace("{where}", "audio_in_mos IS NOT NULL")})
    GROUP BY call_sid
    ORDER BY `Event Timestamp`, `Call SID`
"""

FAILED_MESSAGES = FailureReport(
    (
        "Message Sid",
        "Message Status",
        "Error Code",
        "Error Message",
        "Date Sent",
        "To",
        "From",
        "Body",
    ),
    FAILED_MESSAGES_SQL,
)
FAILED_CALLS = FailureReport(
    (
        "Call SID",
        "Call Status",
        "Event Timestamp",
        "Call Direction",
        "To Number",
        "From Number",
        "Recording URL",
    ),
    FAILED_CALLS_SQL,
)
MOS_CALLS = FailureReport(
    (
        "Call SID",
        "Call Status",
        "Event Timestamp",
        "To Number",
        "From Number",
        "Call Duration(s)",
        "Audio in MOS",
    ),
    MOS_CALLS_SQL,
)

ALERT_REPORTS: dict[AlertType, FailureReport] = {
    AlertType.SMS_FAILURES: FAILED_MESSAGES,
    AlertType.SMS_FAILURE_RATE: FAILED_MESSAGES,
    AlertType.CALL_FAILURES: FAILED_CALLS,
    AlertType.CALL_FAILURE_RATE: FAILED_CALLS,
    AlertType.LOW_MOS: MOS_CALLS,
}


def in_window(
    store: Store, report: FailureReport, *, scope: str, start: float, end: float
) -> list[tuple[Any, ...]]:
    """The report's rows for a scope (`campaign:...`, `number:...`, `account:...`;
    anything else means every SID) and the window [start, end) of event time."""
    scope_type, _, scope_value = scope.partition(":")
    params = {"start": start, "end": end, "scope_type": scope_type, "scope_value": scope_value}
    return store.query(report.sql.replace("{db}", store.database), params)


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Atomically: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                "" if v is None else v.isoformat() if isinstance(v, datetime) else v for v in row
            )
    os.replace(tmp, path)
