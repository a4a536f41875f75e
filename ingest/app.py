"""The edge's app factory: the callback route, health, readiness, metrics and OpenAPI.

The producer is created in a typed lifespan, reaches the callback route through
the lifespan state, and is flushed on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypedDict

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import mark_process_dead
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from contract.kafka import producer_config
from contract.settings import Settings, load_settings
from ingest import metrics
from ingest.callbacks import CallbackEndpoint
from ingest.producer import AsyncProducer
from ingest.signatures import AccountKeys

logger = logging.getLogger(__name__)

OPENAPI = Path(__file__).with_name("openapi.yaml")
CALLBACKS = "/callbacks/"


class State(TypedDict):
    producer: AsyncProducer


class Edge(Starlette):
    """Starlette, except that every POST (or GET: `StatusCallbackMethod=GET`) under
    /callbacks/ goes straight to the callback endpoint (an unknown kind, with slashes or
    not, is its JSON 404 with a log line).

    Starlette's middleware stack and router cost about 9 us per request, a tenth of
    what a callback costs the edge; the callback endpoint has its own error handling.
    Other methods on a callback path still go through the router (405).
    """

    def __init__(self, callbacks: CallbackEndpoint, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._callbacks = callbacks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "GET"):
            path: str = scope["path"]
            if path.startswith(CALLBACKS):
                scope["path_params"] = {"kind": path[len(CALLBACKS) :]}
                return await self._callbacks(scope, receive, send)
        await super().__call__(scope, receive, send)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    producer = request.state.producer
    if producer.fatal is not None:
        return PlainTextResponse(f"kafka producer failed: {producer.fatal.str()}", 503)
    if await asyncio.to_thread(producer.reachable):
        return PlainTextResponse("ready")
    return PlainTextResponse("kafka unreachable", 503, headers={"Retry-After": "5"})


async def prometheus(request: Request) -> Response:
    return Response(generate_latest(metrics.registry()), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return FileResponse(OPENAPI, media_type="application/yaml")


def create_app(settings: Settings | None = None) -> Edge:
    settings = settings or load_settings()
    signatures = AccountKeys(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        producer = AsyncProducer(producer_config(settings))
        if signatures.unchecked:
            logger.warning(
                "no signing key (SWITCHBOARD_SIGNING_KEY, SWITCHBOARD_ACCOUNTS) for %s: "
                "their callback signatures are NOT checked",
                ", ".join(signatures.unchecked),
            )
        logger.info(
            "edge ready: kafka=%s prefix=%r signed URLs from %s",
            settings.kafka_bootstrap,
            settings.topic_prefix,
            settings.public_url or "the request",
        )
        # Everything alive now (modules, the app) lives until exit: out of the collector's
        # sight, full collections stop walking it on the hot path (bench/ingest: p99 at
        # 128 connections 32 -> 20 ms).
        gc.collect()
        gc.freeze()
        try:
            yield {"producer": producer}
        finally:
            # uvicorn stops accepting and lets the requests in flight finish before the
            # lifespan ends: flush, so a SIGTERM loses nothing that was produced.
            producer.close()
            if metrics.MULTIPROC_DIR in os.environ:
                mark_process_dead(os.getpid())
            logger.info("edge stopped")

    callbacks = CallbackEndpoint(settings, signatures)
    return Edge(
        callbacks,
        routes=[
            Route(CALLBACKS + "{kind}", callbacks, methods=["POST", "GET"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", prometheus),
            Route("/openapi.yaml", openapi),
        ],
        lifespan=lifespan,
    )
