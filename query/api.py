"""The query API and the dashboard: reports as JSON, exports as CSV, behind a token,
on loopback by default.

The dashboard page and its scripts are served from the package (no CDN, so it works
offline) and hold no data: they are open, and everything under /api needs the token.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from contract import published
from contract.errors import SwitchboardError
from contract.privacy import number_key
from contract.settings import Settings
from query import exports
from query.auth import token_matches
from query.deadletters import LetterFilter, find_letters
from query.reports import REPORTS, Filters, run_report
from sinks.clickhouse.store import Store
from sinks.privacy import check_number, forget

logger = logging.getLogger(__name__)

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"
# the topics' schemas describe no data, so programs may fetch them without the token
OPEN_PATHS = frozenset({"/healthz", "/", "/dashboard", "/asyncapi.json"})
OPEN_PREFIXES = ("/dashboard/",)
# The panels of the dashboard, fetched together so one poll shows one moment.
DASHBOARD_PANELS = (
    "summary",
    "delivery-rate",
    "failures",
    "mos",
    "calls",
    "alerts",
    "firing",
    "failure-windows",
    "dead-letters",
    "reconciled",
)
SNAPSHOT_S = 1.0  # how long one computation of the panels serves every viewer
# The page may talk to its own origin only: no CDN, no third party, works offline.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'",
    "Referrer-Policy": "no-referrer",  # the page's URL may carry ?token=
    "X-Content-Type-Options": "nosniff",
}


class TokenAuth:
    """`Authorization: Bearer <token>` (or `?token=`) on every path but the open ones."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("authorization", "")
        given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
        given = given or request.query_params.get("token")
        if not token_matches(self.token, given):
            logger.warning("API request to %s refused: missing or wrong token", path)
            await JSONResponse(
                {"error": "unauthorized"}, 401, headers={"WWW-Authenticate": "Bearer"}
            )(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _query_filters(request: Request, defaults: Filters) -> Filters:
    """Query-string filters over the defaults; a malformed value raises ValueError."""
    q = request.query_params

    def when(name: str) -> datetime | None:
        return datetime.fromisoformat(q[name]) if q.get(name) else None

    def positive(name: str, default: int) -> int:
        value = int(q[name]) if q.get(name) else default
        if value < 1:
            raise ValueError(f"{name} must be at least 1")
        return value

    return dataclasses.replace(
        defaults,
        since=when("since"),
        until=when("until"),
        campaign=q.get("campaign") or None,
        number=q.get("number") or None,
        account=q.get("account") or None,
        bucket_s=positive("bucket_s", defaults.bucket_s),
        limit=min(positive("limit", defaults.limit), 10_000),
    )


def create_api(
    store: Store,
    token: str,
    *,
    defaults: Filters | None = None,
    topic_prefix: str = "",
    settings: Settings | None = None,
) -> Starlette:
    """`defaults` carries the deployment's settings (`Filters.from_settings`);
    `topic_prefix` names the topics in the published document; `settings`, the sink's,
    serve `POST /api/forget` (without them it answers 503)."""
    base = defaults or Filters()
    topics_document = published.render(topic_prefix).encode()
    key = number_key(settings) if settings is not None else None

    def _filters(request: Request, defaults: Filters) -> Filters:
        return _query_filters(request, defaults).stored_as(key)

    def report(request: Request) -> Response:  # sync: Starlette runs it in a thread pool
        name = request.path_params["name"]
        if name not in REPORTS:
            return JSONResponse(
                {"error": f"no report {name[:40]!r}", "reports": sorted(REPORTS)}, 404
            )
        try:
            filters = _filters(request, base)
        except ValueError as exc:
            return JSONResponse({"error": f"bad filter: {exc}"}, 400)
        rows = run_report(store, name, filters)
        return JSONResponse({"report": name, "rows": _jsonable(rows)})

    snapshots: dict[tuple[Any, ...], tuple[float, dict[str, Any]]] = {}
    snapshot_lock = threading.Lock()

    def dashboard_data(request: Request) -> Response:
        try:
            filters = _filters(request, base)
        except ValueError as exc:
            return JSONResponse({"error": f"bad filter: {exc}"}, 400)
        # Every viewer polls; one computation per SNAPSHOT_S serves them all, so more
        # open dashboards do not mean more time holding the store from the writers.
        key = tuple(sorted(filters.parameters().items()))
        with snapshot_lock:
            now = time.monotonic()
            for stale in [k for k, (at, _) in snapshots.items() if now - at > SNAPSHOT_S]:
                del snapshots[stale]
            if key not in snapshots:
                panels = {n: _jsonable(run_report(store, n, filters)) for n in DASHBOARD_PANELS}
                snapshots[key] = (now, {
                    "generated_at": datetime.now(UTC).isoformat(),
                    "mos_floor": filters.mos_floor,
                    "panels": panels,
                })  # fmt: skip
            payload = snapshots[key][1]
        return JSONResponse(payload, headers={"Cache-Control": "no-store"})

    def export(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in exports.EXPORTS:
            return JSONResponse(
                {"error": f"no export {name[:40]!r}", "exports": sorted(exports.EXPORTS)}, 404
            )
        try:
            filters = _filters(request, base)
        except ValueError as exc:
            return JSONResponse({"error": f"bad filter: {exc}"}, 400)
        total = exports.count_rows(store, name, filters)

        def lines() -> Iterator[str]:
            yield exports.csv_line(list(exports.EXPORTS[name].columns))
            for cells in exports.iter_rows(store, name, filters):
                yield exports.csv_line(cells)

        return StreamingResponse(
            lines(),  # a sync iterator: Starlette reads it in a thread pool
            media_type="text/csv; charset=utf-8",
            headers={
                "X-Row-Count": str(total),
                "Content-Disposition": f'attachment; filename="{name}.csv"',
            },
        )

    def dead_letters(request: Request) -> Response:
        """The letters themselves, raw records included (`query.deadletters`)."""
        q = request.query_params
        try:
            wanted = LetterFilter(
                since=datetime.fromisoformat(q["since"]) if q.get("since") else None,
                until=datetime.fromisoformat(q["until"]) if q.get("until") else None,
                reason=q.get("reason") or None,
                state=q.get("state") or None,
                after=q.get("after"),
                limit=min(max(1, int(q.get("limit") or 1000)), 10_000),
            )
        except ValueError as exc:
            return JSONResponse({"error": f"bad filter: {exc}"}, 400)
        letters = find_letters(store, wanted)
        return JSONResponse({"letters": [dataclasses.asdict(letter) for letter in letters]})

    async def forget_number(request: Request) -> Response:
        """`{"number": "+1...", "dry_run": false}`: `sinks.privacy.forget`, what it removed."""
        if settings is None:
            return JSONResponse({"error": "erasure is served by the sink's API only"}, 503)
        try:
            body = await request.json()
            number = str(body["number"])
            dry_run = bool(body.get("dry_run", False))
            check_number(number)
        except (ValueError, KeyError, TypeError, SwitchboardError) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, 400)
        try:
            erasure = await run_in_threadpool(forget, settings, store, number, dry_run=dry_run)
        except SwitchboardError as exc:  # a stage behind: nothing deleted from that topic
            logger.error("erasure refused: %s", exc)
            return JSONResponse({"error": str(exc)}, 409)
        return JSONResponse(erasure.to_json())

    async def dashboard(request: Request) -> Response:
        return FileResponse(DASHBOARD_DIR / "index.html", headers=PAGE_HEADERS)

    async def home(request: Request) -> Response:
        return RedirectResponse("/dashboard")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def asyncapi(request: Request) -> Response:
        return Response(topics_document, media_type="application/json")

    return Starlette(
        routes=[
            Route("/api/reports/{name}", report),
            Route("/api/dashboard", dashboard_data),
            Route("/api/exports/{name}", export),
            Route("/api/dead-letters", dead_letters),
            Route("/api/forget", forget_number, methods=["POST"]),
            Route("/dashboard", dashboard),
            Mount("/dashboard/static", StaticFiles(directory=DASHBOARD_DIR), name="static"),
            Route("/", home),
            Route("/healthz", healthz),
            Route("/asyncapi.json", asyncapi),
        ],
        middleware=[Middleware(TokenAuth, token=token)],
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):  # ClickHouse returns naive UTC; say so
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN (an average over no rows)
    return value


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _json_value(v) for k, v in r.items()} for r in rows]
