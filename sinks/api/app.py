"""The query API: reports as JSON, behind a token, on loopback by default."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sinks.api.auth import token_matches
from sinks.clickhouse.reports import REPORTS, Filters, run_report
from sinks.clickhouse.store import Store

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz"})


class TokenAuth:
    """`Authorization: Bearer <token>` (or `?token=` for the dashboard page) on every path."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("authorization", "")
        given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
        given = given or request.query_params.get("token")
        if not token_matches(self.token, given):
            logger.warning("API request to %s refused: missing or wrong token", scope["path"])
            await JSONResponse(
                {"error": "unauthorized"}, 401, headers={"WWW-Authenticate": "Bearer"}
            )(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _filters(request: Request) -> Filters:
    q = request.query_params

    def when(name: str) -> datetime | None:
        return datetime.fromisoformat(q[name]) if q.get(name) else None

    return Filters(
        since=when("since"), until=when("until"), campaign=q.get("campaign"), number=q.get("number")
    )


def create_api(store: Store, token: str) -> Starlette:
    def report(request: Request) -> Response:  # sync: Starlette runs it in a thread pool
        name = request.path_params["name"]
        if name not in REPORTS:
            return JSONResponse(
                {"error": f"no report {name[:40]!r}", "reports": sorted(REPORTS)}, 404
            )
        try:
            filters = _filters(request)
        except ValueError as exc:
            return JSONResponse({"error": f"bad filter: {exc}"}, 400)
        rows = run_report(store, name, filters)
        return JSONResponse({"report": name, "rows": _jsonable(rows)})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[Route("/api/reports/{name}", report), Route("/healthz", healthz)],
        middleware=[Middleware(TokenAuth, token=token)],
    )


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in r.items()} for r in rows
    ]
