"""The reports that the CLI, the query API and the dashboard show: named SQL, with
filters passed to ClickHouse as parameters (never spliced into the text).

Every query reads `FINAL`, so a re-delivered callback counts once, and takes a
message's state as its highest-ranked status, the first one received among equals,
so a late or out-of-order callback never moves it backwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sinks.clickhouse.store import Store


@dataclass(frozen=True)
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    campaign: str | None = None
    number: str | None = None  # a From or To number
    unconfirmed_after_s: int = 900
    extra: dict[str, Any] = field(default_factory=dict)

    def parameters(self) -> dict[str, Any]:
        return {
            "since": self.since or datetime(1970, 1, 1),
            "until": self.until or datetime(2200, 1, 1),
            "campaign": self.campaign or "",
            "number": self.number or "",
            "unconfirmed_after_s": self.unconfirmed_after_s,
        }


_WHERE = """
    received_at >= {since:DateTime64(3)} AND received_at < {until:DateTime64(3)}
    AND ({campaign:String} = '' OR campaign = {campaign:String})
    AND ({number:String} = '' OR `from` = {number:String} OR `to` = {number:String})
"""

# One row per message: its state by precedence, first received among equal ranks.
_MESSAGES = f"""
    SELECT message_sid,
           argMin(message_status, (-status_rank, received_at)) AS status,
           argMin(error_code, (-status_rank, received_at)) AS final_error_code,
           any(campaign) AS message_campaign,
           max(ifNull(num_media, 0)) AS num_media,
           max(received_at) AS last_seen
    FROM {{db}}.sms_events FINAL
    WHERE {_WHERE}
    GROUP BY message_sid
"""

DELIVERY = f"""
    WITH now64(3) - toIntervalSecond({{unconfirmed_after_s:UInt32}}) AS unconfirmed_before
    SELECT message_campaign AS campaign,
           count() AS messages,
           countIf(status = 'delivered') AS delivered,
           countIf(status = 'undelivered') AS undelivered,
           countIf(status = 'failed') AS failed,
           countIf(status = 'sent' AND (num_media > 0 OR last_seen < unconfirmed_before))
               AS unconfirmed,
           countIf(status IN ('accepted', 'scheduled', 'queued', 'sending')
                   OR (status = 'sent' AND num_media = 0 AND last_seen >= unconfirmed_before))
               AS pending,
           round(delivered / nullIf(delivered + undelivered + failed, 0), 4) AS delivery_rate
    FROM ({_MESSAGES})
    GROUP BY message_campaign
    ORDER BY message_campaign
"""

REPORTS: dict[str, str] = {
    "delivery": DELIVERY,
}


def run_report(store: Store, name: str, filters: Filters) -> list[dict[str, Any]]:
    sql = REPORTS[name].replace("{db}", store.database)
    return store.query_dicts(sql, filters.parameters())
