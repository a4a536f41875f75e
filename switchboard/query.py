"""Where the CLI reads reports from: the sink's query API when it runs (in embedded
mode it owns the chDB store), otherwise ClickHouse directly."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from contract.errors import SwitchboardError
from contract.settings import Settings
from sinks.api.auth import read_token
from sinks.clickhouse.reports import Filters, run_report
from sinks.clickhouse.schema import migrate
from sinks.clickhouse.store import Store

logger = logging.getLogger(__name__)


def fetch_report(settings: Settings, name: str, filters: Filters) -> list[dict[str, Any]]:
    params = {
        k: v
        for k, v in {
            "since": filters.since.isoformat() if filters.since else None,
            "until": filters.until.isoformat() if filters.until else None,
            "campaign": filters.campaign,
            "number": filters.number,
        }.items()
        if v
    }
    url = (
        f"http://{settings.api_host}:{settings.api_port}/api/reports/{name}?"
        + urllib.parse.urlencode(params)
    )
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {read_token(settings)}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            rows: list[dict[str, Any]] = json.loads(response.read())["rows"]
            return rows
    except urllib.error.HTTPError as exc:
        raise SwitchboardError(f"query API answered {exc.code}: {exc.read()[:200]!r}") from None
    except (urllib.error.URLError, ConnectionError):
        logger.debug("query API not running; reading ClickHouse directly")
    store = Store.connect(settings, attempts=1)
    try:
        migrate(store)
        return run_report(store, name, filters)
    finally:
        store.close()
