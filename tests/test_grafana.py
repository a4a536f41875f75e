"""The Grafana provisioning in docker-compose.yml cannot run here; these tests keep it
correct against the code: the dashboard is current, and every panel's SQL runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from query import grafana
from sinks.clickhouse.store import Store
from tests import scenario
from tests.harness import ROOT

# What Grafana's macros and variables become, for running a panel's SQL here.
MACROS = {
    "$__fromTime": "toDateTime(0)",
    "$__toTime": "toDateTime(4102444800)",
    "$__interval_s": "60",
    "${campaign:sqlstring}": "''",
    "${number:sqlstring}": "''",
    "${account:sqlstring}": "''",
}


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(grafana.DASHBOARD_PATH.read_text())
    return data


def test_committed_dashboard_is_built_from_the_current_reports() -> None:
    assert grafana.DASHBOARD_PATH.read_text() == grafana.render(), (
        "run `python -m query.grafana` and commit deploy/grafana/"
    )


def test_every_panel_query_runs_on_the_campaign(store: Store) -> None:
    scenario.insert_campaign(store, scenario.minute_base())
    results: dict[str, list[dict[str, Any]]] = {}
    for panel in _dashboard()["panels"]:
        [target] = panel["targets"]
        assert target["datasource"] == grafana.DATASOURCE
        sql = target["rawSql"].replace(f"{grafana.DATABASE}.", f"{store.database}.")
        for macro, value in MACROS.items():
            sql = sql.replace(macro, value)
        assert "$" not in sql and "{" not in sql, sql
        results[panel["title"]] = store.query_dicts(sql)

    [headline] = results["Delivery, alerts and calls"]
    assert (headline["delivery_rate"], headline["alerts"], headline["calls"]) == (0.4444, 2, 10)
    errors = results["Top error codes"]
    assert (errors[0]["error_code"], errors[0]["meaning"]) == ("30003", "unreachable handset")
    assert {e["meaning"] for e in errors if e["error_code"] == ""} == {""}
    assert len(results["Delivery rate over time, per campaign"]) == 4
    assert [r["avg_mos"] for r in results["MOS over time"]] == [4.0, 3.33]
    assert len(results["Alerts"]) == 2 and len(results["Failure windows"]) == 2


def test_compose_provisions_grafana_with_the_clickhouse_plugin() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["grafana"]
    assert "grafana-clickhouse-datasource" in service["environment"]["GF_INSTALL_PLUGINS"]
    assert all(p.startswith("127.0.0.1:") for p in service["ports"])  # loopback, like the API
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    dashboards = ROOT / mounts["/var/lib/grafana/dashboards"]
    assert dashboards.resolve() == grafana.DASHBOARD_PATH.parent
    assert (
        service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        == f"/var/lib/grafana/dashboards/{grafana.DASHBOARD_PATH.name}"
    )

    [source] = yaml.safe_load((provisioning / "datasources/clickhouse.yaml").read_text())[
        "datasources"
    ]
    assert {"type": source["type"], "uid": source["uid"]} == grafana.DATASOURCE
    clickhouse = compose["services"]["clickhouse"]["environment"]
    assert source["jsonData"]["host"] == "clickhouse"
    assert (source["jsonData"]["port"], source["jsonData"]["protocol"]) == (8123, "http")
    assert source["jsonData"]["username"] == clickhouse["CLICKHOUSE_USER"]
    assert source["secureJsonData"]["password"] == clickhouse["CLICKHOUSE_PASSWORD"]
    assert source["jsonData"]["defaultDatabase"] == grafana.DATABASE

    [provider] = yaml.safe_load((provisioning / "dashboards/switchboard.yaml").read_text())[
        "providers"
    ]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


@pytest.mark.parametrize("name", ["summary", "failures", "mos"])
def test_grafana_sql_has_no_query_parameters_left(name: str) -> None:
    assert "{" not in grafana.grafana_sql(name).replace("${", "")
