"""The reports that the CLI, the query API and the dashboard show: named SQL, with
filters passed to ClickHouse as parameters (never spliced into the text).

Every query reads `FINAL`, so a re-delivered callback counts once, and takes a
message's or call's state as its highest-ranked status, the first one received among
equals, so a late or out-of-order callback never moves it backwards. That per-SID
state alone already ignores a re-delivered callback, so `messages_sql` and `calls_sql`
can leave FINAL out, for a query bounded in time: FINAL keeps ClickHouse from
skipping the parts received before the bound (see `sinks.clickhouse.failures`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contract.alerts import ScopeType
from contract.error_codes import meaning
from contract.kinds import SPECS, CallbackKind, KindSpec
from contract.privacy import number_token
from contract.settings import Settings
from contract.statuses import (
    SMS_DELIVERED,
    SMS_FAILED,
    SMS_FAILED_ONLY,
    SMS_NOT_COUNTED,
    SMS_QUEUED,
    SMS_UNDELIVERED,
)
from sinks.clickhouse.store import Store


@dataclass(frozen=True)
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    campaign: str | None = None
    number: str | None = None  # a From or To number
    account: str | None = None  # an AccountSid (a SignalWire project id)
    # This and mos_floor: the settings' defaults, or a deployment's through from_settings.
    unconfirmed_after_s: int = Settings.model_fields["unconfirmed_after_s"].default
    extra: dict[str, Any] = field(default_factory=dict)
    bucket_s: int = 300  # time buckets of the over-time reports
    # calls below it count as low quality in the mos report
    mos_floor: float = Settings.model_fields["mos_floor"].default
    limit: int = 100  # rows of the top-N and latest-N reports

    @classmethod
    def from_settings(cls, settings: Settings, **filters: Any) -> Filters:
        """These filters with the deployment's unconfirmed-after and MOS floor."""
        return cls(
            unconfirmed_after_s=settings.unconfirmed_after_s,
            mos_floor=settings.mos_floor,
            **filters,
        )

    def stored_as(self, key: bytes | None) -> Filters:
        """With numbers stored hashed (`key`), the number filter as the rows hold it."""
        if key is None or not self.number:
            return self
        return dataclasses.replace(self, number=number_token(self.number, key))

    def parameters(self) -> dict[str, Any]:
        return {
            "since": utc(self.since) or datetime(1970, 1, 1),
            "until": utc(self.until) or datetime(2200, 1, 1),
            "campaign": self.campaign or "",
            "number": self.number or "",
            "account": self.account or "",
            "unconfirmed_after_s": self.unconfirmed_after_s,
            "bucket_s": self.bucket_s,
            "mos_floor": self.mos_floor,
            "limit": self.limit,
        }


def utc(moment: datetime | None) -> datetime | None:
    """Naive times are UTC already; aware ones are converted (ClickHouse gets naive UTC)."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


_IN_TIME_AND_CAMPAIGN = """
    received_at >= {since:DateTime64(3, 'UTC')} AND received_at < {until:DateTime64(3, 'UTC')}
    AND ({campaign:String} = '' OR campaign = {campaign:String})
    AND ({account:String} = '' OR account_sid = {account:String})"""
_WHERE = (
    _IN_TIME_AND_CAMPAIGN
    + """
    AND ({number:String} = '' OR `from` = {number:String} OR `to` = {number:String})
"""
)

# The state a SID has reached: the highest rank, the first received among equals.
# (A Nullable column goes through tuple(): argMin would skip its NULLs otherwise.)
_STATE_ORDER = "(-status_rank, received_at)"


def _final(final: bool) -> str:
    return " FINAL" if final else ""


def _kind_where(spec: KindSpec) -> str:
    """`_WHERE` for any kind's event table; a kind with no From and To (recordings) has
    no callback of a given number."""
    if {"From", "To"} <= {p.name for p in spec.params}:
        return _WHERE
    return _IN_TIME_AND_CAMPAIGN + " AND {number:String} = ''"


def _each_kind(select: str) -> str:
    """`select` over every kind's event table, UNION ALL: `{table}`, `{kind}`,
    `{status}` (the status column) and `{status_param}` are filled in per kind."""
    return "\n    UNION ALL\n".join(
        select.format(
            table=f"{{db}}.{spec.table} FINAL",
            kind=kind.value,
            status=spec.status_column,
            status_param=spec.status_param,
            where=_kind_where(spec),
        )
        for kind, spec in SPECS.items()
    )


def messages_sql(extra_where: str = "", *, final: bool = True) -> str:
    """One row per message: its state by precedence and what the exports need."""
    return f"""
    SELECT message_sid,
           argMin(message_status, {_STATE_ORDER}) AS status,
           argMin(tuple(error_code), {_STATE_ORDER}).1 AS final_error_code,
           argMin(received_at, {_STATE_ORDER}) AS settled_at,
           any(campaign) AS message_campaign,
           any(`to`) AS message_to,
           any(`from`) AS message_from,
           any(body) AS message_body,
           max(ifNull(num_media, 0)) AS num_media,
           max(received_at) AS last_seen
    FROM {{db}}.sms_events{_final(final)}
    WHERE {_WHERE} {extra_where}
    GROUP BY message_sid
"""


def _in(statuses: frozenset[str]) -> str:
    """`('a', 'b')`: a set of `contract.statuses` as an SQL list (they are constants)."""
    return "(" + ", ".join(f"'{status}'" for status in sorted(statuses)) + ")"


# Each message in one bucket of the status funnel, by the sets of `contract.statuses`.
# `sent` with no receipt after the configured time, or with media (MMS never gets
# one), is unconfirmed, not failed. A status no rank names is `other`.
_CLASSIFIED = f"""
    WITH now64(3) - toIntervalSecond({{unconfirmed_after_s:UInt32}}) AS unconfirmed_before
    SELECT *,
           multiIf(status IN {_in(SMS_DELIVERED)}, 'delivered',
                   status IN {_in(SMS_UNDELIVERED)}, 'undelivered',
                   status IN {_in(SMS_FAILED_ONLY)}, 'failed',
                   status IN {_in(SMS_NOT_COUNTED)}, 'not_counted',
                   status = 'sent' AND (num_media > 0 OR last_seen < unconfirmed_before),
                       'unconfirmed',
                   status = 'sent', 'sent',
                   status IN {_in(SMS_QUEUED)}, 'queued',
                   'other') AS bucket
    FROM ({messages_sql()})
"""


def calls_sql(extra_where: str = "", *, final: bool = True) -> str:
    """One row per call, voice status callbacks and inbound-call callbacks alike."""
    common = f"""
           argMin(call_status, {_STATE_ORDER}) AS status,
           argMin(event_time, {_STATE_ORDER}) AS event_at,
           argMin(received_at, {_STATE_ORDER}) AS settled_at,
           any(campaign) AS call_campaign,
           any(`to`) AS call_to,
           any(`from`) AS call_from,
           max(call_duration) AS duration_s,
           argMinIf(audio_in_mos, {_STATE_ORDER}, audio_in_mos IS NOT NULL) AS mos"""
    return f"""
    SELECT 'voice' AS kind, call_sid, {common},
           argMin(tuple(error_code), {_STATE_ORDER}).1 AS final_error_code,
           any(direction) AS call_direction,
           anyIf(recording_url, recording_url != '') AS call_recording_url
    FROM {{db}}.call_events{_final(final)}
    WHERE {_WHERE} {extra_where}
    GROUP BY call_sid
    UNION ALL
    SELECT 'inbound-call' AS kind, call_sid, {common},
           CAST(NULL AS Nullable(String)) AS final_error_code,
           CAST('inbound' AS Nullable(String)) AS call_direction,
           CAST(NULL AS Nullable(String)) AS call_recording_url
    FROM {{db}}.inbound_call_events{_final(final)}
    WHERE {_WHERE} {extra_where}
    GROUP BY call_sid
"""


DELIVERY = f"""
    SELECT message_campaign AS campaign,
           count() AS messages,
           countIf(bucket = 'delivered') AS delivered,
           countIf(bucket = 'undelivered') AS undelivered,
           countIf(bucket = 'failed') AS failed,
           countIf(bucket = 'unconfirmed') AS unconfirmed,
           countIf(bucket IN ('queued', 'sent')) AS pending,
           round(delivered / nullIf(delivered + undelivered + failed, 0), 4) AS delivery_rate,
           countIf(bucket = 'not_counted') AS not_counted,
           countIf(bucket = 'other') AS other
    FROM ({_CLASSIFIED})
    GROUP BY message_campaign
    ORDER BY message_campaign
"""

# Delivery rate over time per campaign, by when each message reached its final state.
DELIVERY_RATE = f"""
    SELECT toStartOfInterval(settled_at, toIntervalSecond({{bucket_s:UInt32}})) AS bucket_start,
           message_campaign AS campaign,
           countIf(status IN {_in(SMS_DELIVERED)}) AS delivered,
           countIf(status IN {_in(SMS_UNDELIVERED)}) AS undelivered,
           countIf(status IN {_in(SMS_FAILED_ONLY)}) AS failed,
           round(delivered / nullIf(delivered + undelivered + failed, 0), 4) AS delivery_rate
    FROM ({messages_sql()})
    WHERE status IN {_in(SMS_DELIVERED | SMS_FAILED)}
    GROUP BY bucket_start, campaign
    ORDER BY bucket_start, campaign
"""

CALLS = f"""
    SELECT kind,
           call_campaign AS campaign,
           count() AS calls,
           countIf(status = 'completed') AS completed,
           countIf(status = 'failed') AS failed,
           countIf(status = 'busy') AS busy,
           countIf(status = 'no-answer') AS no_answer,
           countIf(status = 'canceled') AS canceled,
           countIf(status NOT IN ('completed', 'failed', 'busy', 'no-answer', 'canceled'))
               AS in_progress,
           round(sum(ifNull(duration_s, 0)) / 60, 2) AS minutes,
           countIf(mos IS NOT NULL) AS mos_calls,
           round(avg(mos), 2) AS avg_mos
    FROM ({calls_sql()})
    GROUP BY kind, campaign
    ORDER BY kind, campaign
"""

# Top error codes of failed messages and calls; `meaning` is added from contract.error_codes.
FAILURES = f"""
    SELECT kind,
           ifNull(error_code, '') AS error_code,
           count() AS failures,
           countIf(status IN {_in(SMS_FAILED_ONLY)}) AS failed,
           countIf(status IN {_in(SMS_UNDELIVERED)}) AS undelivered,
           round(100 * failures / sum(failures) OVER (), 2) AS share_pct
    FROM (
        SELECT 'sms' AS kind, status, final_error_code AS error_code
        FROM ({messages_sql()}) WHERE status IN {_in(SMS_FAILED)}
        UNION ALL
        SELECT kind, status, final_error_code AS error_code
        FROM ({calls_sql()}) WHERE status = 'failed'
    )
    GROUP BY kind, error_code
    ORDER BY failures DESC, kind, error_code
    LIMIT {{limit:UInt32}}
"""

# MOS over time, per call (its final AudioInMos), by when the call ended.
MOS = f"""
    SELECT toStartOfInterval(settled_at, toIntervalSecond({{bucket_s:UInt32}})) AS bucket_start,
           count() AS calls,
           round(avg(mos), 2) AS avg_mos,
           min(mos) AS min_mos,
           max(mos) AS max_mos,
           countIf(mos < {{mos_floor:Float64}}) AS below_floor
    FROM ({calls_sql()})
    WHERE mos IS NOT NULL
    GROUP BY bucket_start
    ORDER BY bucket_start
"""

# An alert or window about a campaign, number or account has that scope
# (contract.alerts.scope_key); with a filter, only those of that scope.
_SCOPE = f"""
    ({{campaign:String}} = '' OR scope = concat('{ScopeType.CAMPAIGN}:', {{campaign:String}}))
    AND ({{number:String}} = '' OR scope = concat('{ScopeType.NUMBER}:', {{number:String}}))
    AND ({{account:String}} = '' OR scope = concat('{ScopeType.ACCOUNT}:', {{account:String}}))
"""

ALERTS = f"""
    SELECT raised_at, state, type, scope, value, threshold, count, window_start, window_end,
           started_at, repeat, silenced, fingerprint, alert_id
    FROM {{db}}.alerts FINAL
    WHERE raised_at >= {{since:DateTime64(3, 'UTC')}} AND raised_at < {{until:DateTime64(3, 'UTC')}}
      AND {_SCOPE}
    ORDER BY raised_at DESC, alert_id
    LIMIT {{limit:UInt32}}
"""

# Alerts whose latest notification is a `firing` one (window rules: a count rule's alert
# is one notification and never fires on), and for how long, whatever the time filters.
FIRING = f"""
    SELECT type, scope, since AS started_at,
           dateDiff('second', since, now64(3)) AS firing_for_s,
           latest_value AS value, latest_threshold AS threshold,
           latest_silenced AS silenced, last_notified, fingerprint
    FROM (
        SELECT fingerprint, type, scope,
               argMax(state, (raised_at, repeat)) AS latest_state,
               argMax(started_at, (raised_at, repeat)) AS since,
               argMax(value, (raised_at, repeat)) AS latest_value,
               argMax(threshold, (raised_at, repeat)) AS latest_threshold,
               argMax(silenced, (raised_at, repeat)) AS latest_silenced,
               max(raised_at) AS last_notified
        FROM {{db}}.alerts FINAL
        WHERE rule = 'window' AND {_SCOPE}
        GROUP BY fingerprint, type, scope
    )
    WHERE latest_state = 'firing'
    ORDER BY started_at, fingerprint
    LIMIT {{limit:UInt32}}
"""

# The processors' windows that saw failures (metrics.delivery and metrics.calls).
FAILURE_WINDOWS = f"""
    SELECT window_start, window_end, kind, scope, window_s, failures, total,
           round(100 * failures / nullIf(total, 0), 2) AS failure_pct
    FROM (
        SELECT window_start, window_end, 'sms' AS kind, scope, window_s,
               undelivered + failed AS failures, delivered + undelivered + failed AS total
        FROM {{db}}.delivery_windows FINAL
        UNION ALL
        SELECT window_start, window_end, 'calls' AS kind, scope, window_s,
               failed AS failures, calls AS total
        FROM {{db}}.call_windows FINAL
    )
    WHERE failures > 0
      AND window_end > {{since:DateTime64(3, 'UTC')}}
      AND window_start < {{until:DateTime64(3, 'UTC')}}
      AND {_SCOPE}
    ORDER BY window_start DESC, kind, scope, window_s
    LIMIT {{limit:UInt32}}
"""

# Dead letters (contract.deadletters) in the filters' time, by when they were
# dead-lettered; a campaign or number is read from a callback's raw envelope (a letter
# of the forwards dispatcher has neither).
_LETTERS_WHERE = """
    dead_at >= {since:DateTime64(3, 'UTC')} AND dead_at < {until:DateTime64(3, 'UTC')}
    AND ({campaign:String} = ''
         OR JSONExtractString(raw, 'tags', 'campaign') = {campaign:String})
    AND ({number:String} = ''
         OR JSONExtractString(raw, 'params', 'From') = {number:String}
         OR JSONExtractString(raw, 'params', 'To') = {number:String})
    AND ({account:String} = ''
         OR JSONExtractString(raw, 'params', 'AccountSid') = {account:String})
"""

DEAD_LETTERS = f"""
    SELECT reason, stage, topic,
           countIf(state = 'dead') AS dead,
           countIf(state = 'replayed') AS replayed,
           min(dead_at) AS first_dead_at,
           max(dead_at) AS last_dead_at,
           argMax(message, dead_at) AS last_message
    FROM {{db}}.dead_letters FINAL
    WHERE {_LETTERS_WHERE}
    GROUP BY reason, stage, topic
    ORDER BY dead DESC, replayed DESC, reason, stage, topic
    LIMIT {{limit:UInt32}}
"""

# What a provider sent that Switchboard could not take as it is, by kind and parameter:
# parameters it has no column for (kept in `extra`), values it could not read as their
# type (NULL in their column, the text kept in `parse_errors`), statuses it does not know
# (stored and counted apart, never ranked above a known one).
_PARAMS_OF_KIND = """
        SELECT '{kind}' AS kind, received_at, arrayJoin(arrayConcat(
                   arrayMap(k -> ('unknown parameter', k, extra[k]), mapKeys(extra)),
                   arrayMap(k -> ('unreadable value', k, parse_errors[k]), mapKeys(parse_errors)),
                   if(status_rank < 0,
                      [('unknown status', '{status_param}', toString(`{status}`))], []))
               ) AS found,
               found.1 AS problem, found.2 AS parameter, found.3 AS value
        FROM {table}
        WHERE {where}"""
PARAMS = f"""
    SELECT kind, parameter, problem, count() AS callbacks, any(value) AS example,
           min(received_at) AS first_seen, max(received_at) AS last_seen
    FROM ({_each_kind(_PARAMS_OF_KIND)})
    GROUP BY kind, parameter, problem
    ORDER BY callbacks DESC, kind, parameter, problem
    LIMIT {{limit:UInt32}}
"""


# The dashboard's headline figures and status funnel in one row, with what was not
# counted as usual: callbacks of a status Switchboard does not know, and dead letters
# waiting for a replay, by reason.
def _by(column: str) -> str:
    """`failed 3, refused 1`: the counts `n` of a subquery grouped by `column`, most first."""
    return (
        f"arrayStringConcat(arrayMap(r -> concat(r.2, ' ', toString(r.1)), "
        f"arrayReverseSort(groupArray((n, {column})))), ', ')"
    )


SUMMARY = f"""
    SELECT m.messages, m.queued, m.sent, m.delivered, m.undelivered, m.failed, m.unconfirmed,
           m.delivery_rate, c.calls, c.minutes, c.avg_mos, a.alerts, u.unknown_statuses,
           d.dead_letters, d.dead_letters_by_reason, f.failed_sends, f.failed_sends_by_kind
    FROM (
        SELECT count() AS messages,
               countIf(bucket = 'queued') AS queued,
               countIf(bucket = 'sent') AS sent,
               countIf(bucket = 'delivered') AS delivered,
               countIf(bucket = 'undelivered') AS undelivered,
               countIf(bucket = 'failed') AS failed,
               countIf(bucket = 'unconfirmed') AS unconfirmed,
               round(delivered / nullIf(delivered + undelivered + failed, 0), 4) AS delivery_rate
        FROM ({_CLASSIFIED})
    ) AS m
    CROSS JOIN (
        SELECT count() AS calls,
               round(sum(ifNull(duration_s, 0)) / 60, 2) AS minutes,
               round(avg(mos), 2) AS avg_mos
        FROM ({calls_sql()})
    ) AS c
    CROSS JOIN (
        SELECT count() AS alerts
        FROM {{db}}.alerts FINAL
        WHERE raised_at >= {{since:DateTime64(3, 'UTC')}}
          AND raised_at < {{until:DateTime64(3, 'UTC')}} AND {_SCOPE}
    ) AS a
    CROSS JOIN (
        SELECT count() AS unknown_statuses
        FROM ({_each_kind("SELECT 1 FROM {table} WHERE status_rank < 0 AND {where}")})
    ) AS u
    CROSS JOIN (
        SELECT sum(n) AS dead_letters, {_by("reason")} AS dead_letters_by_reason
        FROM (
            SELECT reason, count() AS n FROM {{db}}.dead_letters FINAL
            WHERE state = 'dead' AND {_LETTERS_WHERE}
            GROUP BY reason
        )
    ) AS d
    CROSS JOIN (
        -- SMS and alert notifications given up: refused, or failing every try
        SELECT sum(n) AS failed_sends, {_by("kind")} AS failed_sends_by_kind
        FROM (
            SELECT kind, count() AS n FROM {{db}}.forwards FINAL
            WHERE state = 'dead'
              AND requested_at >= {{since:DateTime64(3, 'UTC')}}
              AND requested_at < {{until:DateTime64(3, 'UTC')}}
            GROUP BY kind
        )
    ) AS f
"""


def _final_sources(kind: str, spec: KindSpec) -> str:
    top = max(spec.ranks.values())
    return f"""
        SELECT '{kind}' AS kind, {spec.sid_column} AS sid, any(campaign) AS sid_campaign,
               argMin(source, {_STATE_ORDER}) AS final_source
        FROM {{db}}.{spec.table} FINAL
        WHERE {_WHERE}
        GROUP BY {spec.sid_column}
        HAVING max(status_rank) = {top}"""


# Where each final status came from: the provider's callback, or reconcile/ reading the
# REST API because the callback never came. A share that grows says the provider's
# callbacks are getting lost (an edge down, a proxy swallowing them).
_RECONCILED_KINDS = (CallbackKind.SMS, CallbackKind.VOICE, CallbackKind.INBOUND_CALL)
RECONCILED = f"""
    SELECT kind,
           sid_campaign AS campaign,
           count() AS final_statuses,
           countIf(final_source = 'reconcile') AS reconciled,
           round(100 * reconciled / final_statuses, 2) AS reconciled_pct
    FROM ({" UNION ALL ".join(_final_sources(k.value, SPECS[k]) for k in _RECONCILED_KINDS)})
    GROUP BY kind, campaign
    ORDER BY kind, campaign
"""

REPORTS: dict[str, str] = {
    "delivery": DELIVERY,
    "calls": CALLS,
    "failures": FAILURES,
    "mos": MOS,
    "summary": SUMMARY,
    "delivery-rate": DELIVERY_RATE,
    "alerts": ALERTS,
    "firing": FIRING,
    "failure-windows": FAILURE_WINDOWS,
    "dead-letters": DEAD_LETTERS,
    "params": PARAMS,
    "reconciled": RECONCILED,
}

DESCRIPTIONS: dict[str, str] = {
    "delivery": "per campaign: messages, delivered, undelivered, failed, unconfirmed, rate",
    "calls": "per kind and campaign: calls by final status, minutes, average MOS",
    "failures": "top error codes of failed messages and calls, with their meaning",
    "mos": "MOS over time: calls, average, min, max, calls below the floor",
    "summary": "one row: the status funnel, delivery rate, calls, minutes, MOS, alerts, "
    "callbacks of unknown statuses, dead letters by reason",
    "delivery-rate": "delivery rate over time per campaign",
    "alerts": "the latest alert notifications: firing, repeated, resolved, silenced",
    "firing": "the alerts firing now, since when and for how long",
    "failure-windows": "the processors' windows that saw failures",
    "dead-letters": "dead letters by reason, stage and topic: waiting (dead) and replayed",
    "params": "unknown parameters, unreadable values and unknown statuses, by kind",
    "reconciled": "per kind and campaign: final statuses, and how many came from reconciliation "
    "(the provider's REST API) because their callback was lost",
}


def run_report(store: Store, name: str, filters: Filters) -> list[dict[str, Any]]:
    sql = REPORTS[name].replace("{db}", store.database)
    return with_meanings(store.query_dicts(sql, filters.parameters()))


def with_meanings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Put each error code's meaning right after it, for people reading the report."""
    if not rows or "error_code" not in rows[0]:
        return rows
    out = []
    for row in rows:
        new: dict[str, Any] = {}
        for key, value in row.items():
            new[key] = value
            if key == "error_code":
                new["meaning"] = meaning(value)
        out.append(new)
    return out
