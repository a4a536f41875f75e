"""Where the CLI reads reports and exports from: the sink's query API when it runs (in
embedded mode it owns the chDB store), otherwise ClickHouse directly."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from contract.deadletters import DeadLetter
from contract.errors import SwitchboardError
from contract.privacy import number_key
from contract.settings import Settings
from query import exports
from query.auth import read_token
from query.deadletters import LetterFilter, find_letters
from query.reports import Filters, run_report
from sinks.clickhouse.schema import migrate
from sinks.clickhouse.store import Store

logger = logging.getLogger(__name__)


def filter_params(filters: Filters) -> dict[str, str]:
    """The API's query string for these filters (it passes them on as SQL parameters)."""
    params = {
        "since": filters.since.isoformat() if filters.since else None,
        "until": filters.until.isoformat() if filters.until else None,
        "campaign": filters.campaign,
        "number": filters.number,
        "account": filters.account,
        "bucket_s": str(filters.bucket_s),
        "limit": str(filters.limit),
    }
    return {k: v for k, v in params.items() if v}


def _open_api(settings: Settings, path: str, query: dict[str, str]) -> Any | None:
    """The API's response, or None when no query API is running."""
    url = f"http://{settings.api_host}:{settings.api_port}{path}?" + urllib.parse.urlencode(query)
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {read_token(settings)}"}
    )
    try:
        return urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as exc:
        raise SwitchboardError(f"query API answered {exc.code}: {exc.read()[:200]!r}") from None
    except (urllib.error.URLError, ConnectionError):
        logger.debug("query API not running; reading ClickHouse directly")
        return None


@contextlib.contextmanager
def _direct_store(settings: Settings) -> Iterator[Store]:
    store = Store.connect(settings, attempts=1)
    try:
        migrate(store, settings)
        yield store
    finally:
        store.close()


def fetch_report(settings: Settings, name: str, filters: Filters) -> list[dict[str, Any]]:
    response = _open_api(settings, f"/api/reports/{name}", filter_params(filters))
    if response is not None:
        with response:
            rows: list[dict[str, Any]] = json.loads(response.read())["rows"]
            return rows
    with _direct_store(settings) as store:
        return run_report(store, name, filters.stored_as(number_key(settings)))


def fetch_letters(settings: Settings, wanted: LetterFilter) -> list[DeadLetter]:
    response = _open_api(settings, "/api/dead-letters", wanted.query())
    if response is not None:
        with response:
            return [DeadLetter(**row) for row in json.loads(response.read())["letters"]]
    with _direct_store(settings) as store:
        return find_letters(store, wanted)


@dataclass
class ExportStream:
    """An export's header, its row count (for progress) and its rows, read lazily."""

    columns: tuple[str, ...]
    total: int
    rows: Iterator[list[str]]


@contextlib.contextmanager
def open_export(settings: Settings, name: str, filters: Filters) -> Iterator[ExportStream]:
    response = _open_api(settings, f"/api/exports/{name}", filter_params(filters))
    if response is not None:
        with response:
            reader = csv.reader(io.TextIOWrapper(response, encoding="utf-8", newline=""))
            columns = tuple(next(reader))
            yield ExportStream(columns, int(response.headers.get("X-Row-Count", 0)), reader)
        return
    stored = filters.stored_as(number_key(settings))
    with _direct_store(settings) as store:
        yield ExportStream(
            exports.EXPORTS[name].columns,
            exports.count_rows(store, name, stored),
            exports.iter_rows(store, name, stored),
        )


def request_forget(
    settings: Settings,
    number: str,
    *,
    dry_run: bool,
    progress: Callable[[str, int, int], None],
) -> dict[str, Any]:
    """`sinks.privacy.forget` in the running sink (which owns an embedded store), or here
    against ClickHouse directly when no sink runs (with `progress`)."""
    from sinks.privacy import forget

    url = f"http://{settings.api_host}:{settings.api_port}/api/forget"
    request = urllib.request.Request(
        url,
        data=json.dumps({"number": number, "dry_run": dry_run}).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {read_token(settings)}",
            "Content-Type": "application/json",
        },
    )
    try:
        # a long wait: the sink waits for the stages to catch up, then for the mutations
        with urllib.request.urlopen(request, timeout=900) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("error", "")
        raise SwitchboardError(f"query API answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, ConnectionError):
        logger.debug("query API not running; erasing with ClickHouse directly")
    with _direct_store(settings) as store:
        return forget(settings, store, number, dry_run=dry_run, progress=progress).to_json()
