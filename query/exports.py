"""CSV exports with the seed apps' columns: named SQL, filters as parameters, read in
pages by SID so a long export neither holds the store's lock nor all rows at once.

- failed-messages: messages whose state is failed or undelivered, with what the
  enrichment fetched from the REST API (error message, date sent) where it has.
- failed-calls: voice calls whose state is failed (the seed's failed-calls log).
- calls: voice calls that ended otherwise: completed, canceled, no-answer, busy
  (the seed's call log, which leaves failed calls to the other table).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from query.reports import Filters, calls_sql, messages_sql
from sinks.clickhouse.store import Store

PAGE_ROWS = 20_000


def _pandas_time(value: datetime) -> str:
    """How the seed's pandas CSV wrote a date: `2024-05-01 12:00:00+00:00`."""
    return str(value.replace(tzinfo=UTC))


def _rfc2822(value: datetime) -> str:
    """The provider's own Timestamp format, which the seed's call logs kept as received."""
    return format_datetime(value.replace(tzinfo=UTC))


@dataclass(frozen=True)
class Export:
    columns: tuple[str, ...]  # the CSV header, the seed's names
    sql: str  # one column per header, in order, the first the SID (`sid`, the paging key)
    formats: dict[str, Callable[[datetime], str]]  # how a header's datetimes are written


_PAGE = "AND {key} > {{after:String}}"
PAGE_WHERE = "{page_where}"  # where a paged query gets `_PAGE`


def failed_messages_sql(messages: str) -> str:
    """The failed-messages rows from `messages` (a `messages_sql`), enriched."""
    return f"""
    SELECT m.message_sid AS sid, m.status, coalesce(f.error_code, m.final_error_code),
           f.error_message, f.date_sent,
           coalesce(f.`to`, m.message_to), coalesce(f.`from`, m.message_from),
           coalesce(f.body, m.message_body)
    FROM ({messages}) AS m
    LEFT JOIN (
        SELECT message_sid, error_code, error_message, date_sent, `to`, `from`, body
        FROM {{db}}.failed_messages FINAL
    ) AS f ON f.message_sid = m.message_sid
    WHERE m.status IN ('failed', 'undelivered')
    ORDER BY sid
"""


FAILED_MESSAGES = Export(
    columns=(
        "Message Sid",
        "Message Status",
        "Error Code",
        "Error Message",
        "Date Sent",
        "To",
        "From",
        "Body",
    ),
    sql=failed_messages_sql(messages_sql(PAGE_WHERE)),
    formats={"Date Sent": _pandas_time},
)

_CALL_COLUMNS = (
    "Call SID",
    "Call Status",
    "Event Timestamp",
    "Call Direction",
    "To Number",
    "From Number",
    "Recording URL (if present)",
)


def _voice_calls(statuses: str) -> str:
    return f"""
    SELECT call_sid AS sid, status, event_at, call_direction, call_to, call_from,
           call_recording_url
    FROM ({calls_sql(PAGE_WHERE)})
    WHERE kind = 'voice' AND status IN ({statuses})
    ORDER BY sid
"""


# The seed's inbound call tracker's table (its CSV on exit): one row per inbound call.
INBOUND_CALLS = Export(
    columns=(
        "Call SID",
        "Call Status",
        "Event Timestamp",
        "To Number",
        "From Number",
        "Call Duration(s)",
        "Audio in MOS",
    ),
    sql=f"""
    SELECT call_sid AS sid, status, event_at, call_to, call_from, duration_s, mos
    FROM ({calls_sql(PAGE_WHERE)})
    WHERE kind = 'inbound-call'
    ORDER BY sid
""",
    formats={"Event Timestamp": _rfc2822},
)

EXPORTS: dict[str, Export] = {
    "failed-messages": FAILED_MESSAGES,
    "failed-calls": Export(_CALL_COLUMNS, _voice_calls("'failed'"), {"Event Timestamp": _rfc2822}),
    "calls": Export(
        _CALL_COLUMNS,
        _voice_calls("'completed', 'canceled', 'no-answer', 'busy'"),
        {"Event Timestamp": _rfc2822},
    ),
    "inbound-calls": INBOUND_CALLS,
}

DESCRIPTIONS: dict[str, str] = {
    "failed-messages": "failed and undelivered messages, enriched where the REST API was asked "
    "(the seed's SMS error tracker's table)",
    "failed-calls": "voice calls that failed (the seed's voice call tracker's failed calls)",
    "calls": "voice calls that ended: completed, canceled, no-answer, busy (the seed's voice "
    "call tracker's table; failed calls are in failed-calls)",
    "inbound-calls": "inbound calls (the seed's inbound call tracker's table)",
}

_SID_KEY = {
    "failed-messages": "message_sid",
    "failed-calls": "call_sid",
    "calls": "call_sid",
    "inbound-calls": "call_sid",
}


def _sql(store: Store, name: str, *, paged: bool) -> str:
    page_where = _PAGE.format(key=_SID_KEY[name]) if paged else ""
    sql = EXPORTS[name].sql.replace(PAGE_WHERE, page_where).replace("{db}", store.database)
    return sql + " LIMIT {page:UInt32}" if paged else sql


def count_rows(store: Store, name: str, filters: Filters) -> int:
    rows = store.query(
        f"SELECT count() FROM ({_sql(store, name, paged=False)})", filters.parameters()
    )
    return int(rows[0][0])


def iter_rows(
    store: Store, name: str, filters: Filters, *, page: int = PAGE_ROWS
) -> Iterator[list[str]]:
    """The export's rows as CSV cells, page by page in SID order."""
    export = EXPORTS[name]
    sql = _sql(store, name, paged=True)
    formats = [export.formats.get(column) for column in export.columns]
    after = ""
    while True:
        rows = store.query(sql, {**filters.parameters(), "after": after, "page": page})
        for row in rows:
            yield [_cell(value, fmt) for value, fmt in zip(row, formats, strict=True)]
        if len(rows) < page:
            return
        after = rows[-1][0]


def _cell(value: Any, fmt: Callable[[datetime], str] | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime) and fmt is not None:
        return fmt(value)
    return str(value)


def csv_line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()
