"""The dead letters themselves, as `switchboard dead-letters list|replay` reads them: the
latest row of each letter in `dead_letters`, raw record included, as `DeadLetter`s.

Two orders: the newest first (to look at), or by letter id after a cursor (to page
through every letter a replay selects, however many).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from contract.deadletters import DeadLetter
from query.reports import utc
from sinks.clickhouse.store import Store

_COLUMNS = tuple(f.name for f in fields(DeadLetter))
# times as epoch seconds, as the record has them
_SELECT = ", ".join(
    f"toUnixTimestamp64Milli({c}) / 1000 AS {c}" if c in ("dead_at", "updated_at") else f"`{c}`"
    for c in _COLUMNS
)


@dataclass(frozen=True)
class LetterFilter:
    since: datetime | None = None  # dead-lettered at or after
    until: datetime | None = None
    reason: str | None = None
    state: str | None = None  # dead or replayed; None: either
    after: str | None = None  # page by letter id after this one (None: the newest first)
    limit: int = 1000

    def query(self) -> dict[str, str]:
        """As the query API takes it."""
        values = {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "reason": self.reason,
            "state": self.state,
            "after": self.after,
            "limit": str(self.limit),
        }
        return {k: v for k, v in values.items() if v is not None}

    def parameters(self) -> dict[str, Any]:
        return {
            "since": utc(self.since) or datetime(1970, 1, 1),
            "until": utc(self.until) or datetime(2200, 1, 1),
            "reason": self.reason or "",
            "state": self.state or "",
            "after": self.after or "",
            "limit": self.limit,
        }


def find_letters(store: Store, wanted: LetterFilter) -> list[DeadLetter]:
    order = "dead_at DESC, letter_id" if wanted.after is None else "letter_id"
    rows = store.query_dicts(
        f"SELECT {_SELECT} FROM {store.table('dead_letters')} FINAL "
        "WHERE dead_at >= {since:DateTime64(3, 'UTC')} AND dead_at < {until:DateTime64(3, 'UTC')} "
        "AND ({reason:String} = '' OR reason = {reason:String}) "
        "AND ({state:String} = '' OR state = {state:String}) "
        "AND letter_id > {after:String} "
        f"ORDER BY {order} LIMIT {{limit:UInt32}}",
        wanted.parameters(),
    )
    return [DeadLetter(**row) for row in rows]
