"""The failures behind an alert, as CSV with the seed's columns: the queries of
`switchboard export` (query.exports, on the reports' per-SID state), narrowed to the
alert's scope and window of event time, the time the processors window by.

- SMS alerts: the failed-messages export, with what enrichment fetched where it has run.
- Call alerts: failed calls, voice and inbound-call alike (the processors count both),
  with the failed-calls export's columns.
- Low-MOS alerts: the calls that reported a MOS, with the seed's inbound-call columns.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contract.alerts import AlertType, ScopeType
from query.exports import EXPORTS, Export, failed_messages_sql
from query.reports import Filters, calls_sql, messages_sql
from sinks.clickhouse.store import Store

# Added to the WHERE of each event table's scan. The scans leave FINAL out (the per-SID
# state ignores a re-delivered callback by itself): ClickHouse then filters by event time
# before reading the other columns, rather than merging every row first (2.4 times
# faster on a million SMS events), and skips parts received before the window.
_IN_SCOPE_AND_WINDOW = f"""
    AND event_time >= toDateTime64({{start:Float64}}, 3, 'UTC')
    AND event_time < toDateTime64({{end:Float64}}, 3, 'UTC')
    AND multiIf(
        {{scope_type:String}} = '{ScopeType.CAMPAIGN}', campaign = {{scope_value:String}},
        {{scope_type:String}} = '{ScopeType.NUMBER}',
            `from` = {{scope_value:String}} OR `to` = {{scope_value:String}},
        {{scope_type:String}} = '{ScopeType.ACCOUNT}', account_sid = {{scope_value:String}},
        1)
"""


@dataclass(frozen=True, slots=True)
class AlertReport:
    export: Export  # columns and how their times are written
    sql: str  # one column per header; `{db}` for the database


def _calls(where: str, columns: str) -> str:
    """One row per call (its voice row when both kinds reported it)."""
    return f"""
    SELECT {columns}
    FROM ({calls_sql(_IN_SCOPE_AND_WINDOW, final=False)})
    WHERE {where}
    ORDER BY call_sid, kind != 'voice'
    LIMIT 1 BY call_sid
"""


FAILED_MESSAGES = AlertReport(
    EXPORTS["failed-messages"],
    failed_messages_sql(messages_sql(_IN_SCOPE_AND_WINDOW, final=False)),
)
FAILED_CALLS = AlertReport(
    EXPORTS["failed-calls"],
    _calls(
        "status = 'failed'",
        "call_sid, status, event_at, call_direction, call_to, call_from, call_recording_url",
    ),
)
# a low-MOS alert lists its calls with the inbound call tracker's columns
MOS_CALLS = AlertReport(
    EXPORTS["inbound-calls"],
    _calls("mos IS NOT NULL", "call_sid, status, event_at, call_to, call_from, duration_s, mos"),
)

ALERT_REPORTS: dict[AlertType, AlertReport] = {
    AlertType.SMS_FAILURES: FAILED_MESSAGES,
    AlertType.SMS_FAILURE_RATE: FAILED_MESSAGES,
    AlertType.CALL_FAILURES: FAILED_CALLS,
    AlertType.CALL_FAILURE_RATE: FAILED_CALLS,
    AlertType.LOW_MOS: MOS_CALLS,
}


# How far a provider's event time may run ahead of our receipt of it (clock skew). A
# callback of the window was received after its start less this, so the parts of the
# event tables received wholly before that (their partitions are months of received_at,
# and each part keeps its received_at range) are never read.
RECEIPT_SKEW_S = 3600.0


def in_window(
    store: Store, report: AlertReport, *, scope: str, start: float, end: float
) -> list[Sequence[Any]]:
    """The report's rows for a scope (`campaign:...`, `number:...`, `account:...`;
    anything else means every SID) and the window [start, end) of event time."""
    return store.query(*window_query(store, report, scope=scope, start=start, end=end))


def window_query(
    store: Store, report: AlertReport, *, scope: str, start: float, end: float
) -> tuple[str, dict[str, Any]]:
    """`in_window`'s SQL and parameters."""
    scope_type, _, scope_value = scope.partition(":")
    received_from = datetime.fromtimestamp(start - RECEIPT_SKEW_S, UTC)
    params = Filters(since=received_from).parameters() | {
        "start": start,
        "end": end,
        "scope_type": scope_type,
        "scope_value": scope_value,
    }
    return report.sql.replace("{db}", store.database), params


def write_csv(path: Path, report: AlertReport, rows: Sequence[Sequence[Any]]) -> None:
    """Atomically: a reader never sees half a report."""
    formats = [report.export.formats.get(column) for column in report.export.columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(report.export.columns)
        for row in rows:
            writer.writerow(
                ""
                if value is None
                else fmt(value)
                if fmt is not None and isinstance(value, datetime)
                else value
                for value, fmt in zip(row, formats, strict=True)
            )
    os.replace(tmp, path)
