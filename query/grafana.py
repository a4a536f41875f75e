"""The dashboard's panels as a Grafana dashboard (deploy/grafana/), built from the same
named SQL as the reports, so the two never drift apart.

Grafana's ClickHouse plugin has no query parameters; its macros and variables take
their place: the time picker for since/until, `$__interval_s` for the bucket, and the
`campaign`, `number` and `account` text boxes through `:sqlstring`, which quotes and escapes.
`python -m query.grafana` rewrites the JSON; a test checks it is current and that every
panel's SQL runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from contract.error_codes import ERROR_CODES, UNKNOWN
from contract.settings import Settings
from query.reports import REPORTS, Filters

DASHBOARD_PATH = Path(__file__).resolve().parents[1] / "deploy/grafana/dashboards/switchboard.json"
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "switchboard-clickhouse"}
# The settings' defaults: Grafana's panels have no deployment's settings to read.
DATABASE = Settings.model_fields["clickhouse_database"].default
_DEFAULTS = Filters()

GRAFANA_PARAMETERS = {
    "since": "$__fromTime",
    "until": "$__toTime",
    "campaign": "${campaign:sqlstring}",
    "number": "${number:sqlstring}",
    "account": "${account:sqlstring}",
    "bucket_s": "$__interval_s",
    "unconfirmed_after_s": str(_DEFAULTS.unconfirmed_after_s),
    "mos_floor": str(_DEFAULTS.mos_floor),
    "limit": "20",
}
_PARAMETER = re.compile(r"\{(\w+):[^{}]+\}")


def grafana_sql(report: str, wrap: str = "{sql}") -> str:
    """A report's SQL with Grafana's macros for its parameters, inside `wrap`."""
    sql = REPORTS[report].replace("{db}", DATABASE)
    sql = _PARAMETER.sub(lambda m: GRAFANA_PARAMETERS[m.group(1)], sql)
    return wrap.replace("{sql}", sql.strip())


def _meaning_sql() -> str:
    codes = ", ".join(f"'{code}'" for code in ERROR_CODES)
    meanings = ", ".join("'" + text.replace("'", "\\'") + "'" for text in ERROR_CODES.values())
    return f"if(error_code = '', '', transform(error_code, [{codes}], [{meanings}], '{UNKNOWN}'))"


def _panel(
    title: str, kind: str, sql: str, grid: tuple[int, int, int, int], *, series: bool = False,
    **extra: Any,
) -> dict[str, Any]:  # fmt: skip
    x, y, w, h = grid
    return {
        "title": title,
        "type": kind,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "editorType": "sql",
                "queryType": "timeseries" if series else "table",
                "format": 0 if series else 1,  # the plugin's Format.TIMESERIES / TABLE
                "rawSql": sql,
            }
        ],
        **extra,
    }


def _stat_fields(pattern: str, unit_overrides: dict[str, str]) -> dict[str, Any]:
    return {
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": pattern, "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "value_and_name",
        },
        "fieldConfig": {
            "defaults": {"decimals": 2},
            "overrides": [
                {
                    "matcher": {"id": "byName", "options": name},
                    "properties": [{"id": "unit", "value": unit}],
                }
                for name, unit in unit_overrides.items()
            ],
        },
    }


def build() -> dict[str, Any]:
    summary = grafana_sql("summary")
    panels = [
        _panel(
            "Delivery, alerts and calls", "stat", summary, (0, 0, 24, 4),
            **_stat_fields(
                "/^(delivery_rate|messages|alerts|calls|minutes|avg_mos|dead_letters)$/",
                {"delivery_rate": "percentunit"},
            ),
        ),
        _panel(
            "Delivery rate over time, per campaign", "timeseries",
            grafana_sql("delivery-rate", "SELECT bucket_start AS time, campaign, delivery_rate "
                        "FROM ({sql}) ORDER BY time"),
            (0, 4, 16, 9), series=True,
            fieldConfig={"defaults": {"unit": "percentunit", "min": 0, "max": 1}, "overrides": []},
        ),
        _panel(
            "Status funnel", "bargauge", summary, (16, 4, 8, 9),
            options={
                "orientation": "horizontal", "displayMode": "basic",
                "reduceOptions": {
                    "calcs": ["lastNotNull"], "values": False,
                    "fields": "/^(queued|sent|delivered|undelivered|failed|unconfirmed)$/",
                },
            },
        ),
        _panel(
            "Top error codes", "table",
            grafana_sql("failures", "SELECT kind, error_code, " + _meaning_sql()
                        + " AS meaning, failures, share_pct FROM ({sql})"),
            (0, 13, 12, 9),
        ),
        _panel(
            "MOS over time", "timeseries",
            grafana_sql("mos", "SELECT bucket_start AS time, avg_mos, min_mos FROM ({sql}) "
                        "ORDER BY time"),
            (12, 13, 12, 9), series=True,
            fieldConfig={"defaults": {"min": 1, "max": 5}, "overrides": []},
        ),
        _panel("Call statistics", "table", grafana_sql("calls"), (0, 22, 12, 8)),
        _panel("Alerts", "table", grafana_sql("alerts"), (12, 22, 12, 8)),
        _panel("Failure windows", "table", grafana_sql("failure-windows"), (0, 30, 24, 8)),
        _panel("Dead letters", "table", grafana_sql("dead-letters"), (0, 38, 24, 6)),
    ]  # fmt: skip
    for number, panel in enumerate(panels, 1):
        panel["id"] = number
    text_box = {"type": "textbox", "query": "", "current": {"text": "", "value": ""}}
    return {
        "uid": "switchboard",
        "title": "Switchboard",
        "description": "From query/reports.py, by python -m query.grafana",
        "tags": ["switchboard", "signalwire"],
        "timezone": "utc",
        "refresh": "10s",
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {**text_box, "name": "campaign", "label": "campaign"},
                {**text_box, "name": "number", "label": "number"},
                {**text_box, "name": "account", "label": "account"},
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main() -> None:
    DASHBOARD_PATH.parent.mkdir(parents=True, exist_ok=True)
    DASHBOARD_PATH.write_text(render())
    print(f"wrote {DASHBOARD_PATH}")


if __name__ == "__main__":
    main()
