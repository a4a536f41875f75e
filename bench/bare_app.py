"""The bench's baseline: a bare Starlette app that parses the body as the edge does, then 204.

It reads the body, decodes it with the edge's own `ingest.body.decode` and answers
204 without Kafka, signatures, metrics or logging, so the edge's rate beside it
shows what durability and the rest cost.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ingest.body import decode


async def callback(request: Request) -> Response:
    decode(request.headers.get("content-type"), await request.body())
    return Response(status_code=204)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[Route("/callbacks/{kind}", callback, methods=["POST"]), Route("/healthz", healthz)]
)
