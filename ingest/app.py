"""The edge: `POST /callbacks/{kind}` answers 204 only once Kafka holds the callback.

Built by an app factory with a typed lifespan: the producer is created there,
reaches handlers through `request.state`, and is flushed on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypedDict

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from contract.envelope import Envelope, SignatureVerdict
from contract.errors import BadCallback, DeliveryFailed
from contract.kafka import producer_config
from contract.kinds import CallbackKind
from contract.settings import Settings, load_settings
from contract.topics import topic_name
from ingest import metrics
from ingest.body import UnsupportedMediaType, decode
from ingest.producer import AsyncProducer
from ingest.signatures import SIGNATURE_HEADERS, SignatureChecker

logger = logging.getLogger(__name__)

OPENAPI = Path(__file__).with_name("openapi.yaml")


class State(TypedDict):
    settings: Settings
    producer: AsyncProducer
    signatures: SignatureChecker | None


class _TooLarge(Exception):
    pass


def _reject(kind: str, status: int, reason: str, detail: str, sid: str | None = None) -> Response:
    logger.warning("rejected %s callback sid=%s: %s (%d)", kind, sid or "-", detail, status)
    metrics.REJECTED.labels(kind, reason).inc()
    metrics.REQUESTS.labels(kind, str(status)).inc()
    return JSONResponse({"error": reason, "detail": detail}, status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_callback(request: Request) -> Response:
    settings: Settings = request.state.settings
    raw_kind = request.path_params["kind"]
    try:
        kind = CallbackKind(raw_kind)
    except ValueError:
        return _reject("unknown", 404, "unknown_kind", f"no callback kind {raw_kind[:40]!r}")
    try:
        raw = await _read_body(request, settings.max_body_bytes)
    except _TooLarge:
        return _reject(kind, 413, "too_large", f"body over {settings.max_body_bytes} bytes")
    try:
        decoded = decode(request.headers.get("content-type"), raw)
    except UnsupportedMediaType as exc:
        return _reject(kind, 415, "unsupported_media_type", exc.reason)
    except BadCallback as exc:
        return _reject(kind, 400, "malformed", exc.reason)

    spec = kind.spec
    sid = decoded.params.get(spec.sid_param, "").strip()
    if not sid:
        return _reject(kind, 400, "missing_sid", f"{spec.sid_param} is missing")

    verdict = SignatureVerdict.UNCHECKED
    checker: SignatureChecker | None = request.state.signatures
    if checker is not None:
        path_and_query = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        url = checker.signed_url(str(request.url), path_and_query)
        signature = next(
            (request.headers[h] for h in SIGNATURE_HEADERS if h in request.headers), None
        )
        if not checker.verify(
            url, signature, raw=raw, form=None if decoded.is_json else decoded.params
        ):
            why = "signature missing" if not signature else "signature does not match"
            return _reject(kind, 403, "bad_signature", why, sid)
        verdict = SignatureVerdict.VALID

    envelope = Envelope(
        kind=kind,
        sid=sid,
        params=decoded.params,
        tags=dict(request.query_params),
        received_at=time.time(),
        signature=verdict,
    )
    topic = topic_name(spec.raw_topic, settings.topic_prefix)
    started = time.perf_counter()
    metrics.IN_FLIGHT.inc()
    try:
        await request.state.producer.send(
            topic, sid.encode(), envelope.to_bytes(), settings.produce_timeout_s
        )
    except DeliveryFailed as exc:
        logger.error("kafka did not take %s callback sid=%s: %s", kind, sid, exc)
        metrics.REJECTED.labels(kind, "kafka_unavailable").inc()
        metrics.REQUESTS.labels(kind, "503").inc()
        return JSONResponse(
            {"error": "unavailable", "detail": "try again"},
            503,
            headers={"Retry-After": str(settings.retry_after_s)},
        )
    finally:
        metrics.IN_FLIGHT.dec()
    metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)
    metrics.REQUESTS.labels(kind, "204").inc()
    status = decoded.params.get(spec.status_param or "", "")
    logger.info(
        "accepted %s sid=%s status=%s error_code=%s",
        kind,
        sid,
        status or "-",
        decoded.params.get("ErrorCode") or "-",
    )
    return Response(status_code=204)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    if await asyncio.to_thread(request.state.producer.reachable):
        return PlainTextResponse("ready")
    return PlainTextResponse("kafka unreachable", 503, headers={"Retry-After": "5"})


async def prometheus(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return FileResponse(OPENAPI, media_type="application/yaml")


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        producer = AsyncProducer(producer_config(settings))
        checker = None
        if settings.signing_key is not None:
            checker = SignatureChecker(settings.signing_key.get_secret_value(), settings.public_url)
        else:
            logger.warning(
                "SWITCHBOARD_SIGNING_KEY is not set: callback signatures are NOT checked"
            )
        logger.info(
            "edge ready: kafka=%s prefix=%r", settings.kafka_bootstrap, settings.topic_prefix
        )
        try:
            yield {"settings": settings, "producer": producer, "signatures": checker}
        finally:
            # uvicorn stops accepting before the lifespan ends: flush what we acknowledged
            # to nobody yet, so a SIGTERM loses nothing in flight.
            producer.close()
            logger.info("edge stopped")

    return Starlette(
        routes=[
            Route("/callbacks/{kind}", receive_callback, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", prometheus),
            Route("/openapi.yaml", openapi),
        ],
        lifespan=lifespan,
    )
