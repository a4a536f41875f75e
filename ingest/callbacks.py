"""`POST /callbacks/{kind}`: answers 204 only once Kafka holds the callback.

The hot route is a plain ASGI endpoint rather than a `request -> response`
function: Starlette's Request and Response objects and its middleware stack
cost about a sixth of the edge's time per callback, and this route needs none
of them. Everything it rejects is
answered 4xx with one log line saying why, and never reaches Kafka.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import orjson
from starlette.datastructures import URL
from starlette.types import Message, Receive, Scope, Send

from contract.envelope import Envelope, SignatureVerdict
from contract.errors import BadCallback, DeliveryFailed
from contract.kinds import CallbackKind
from contract.settings import Settings
from contract.topics import topic_name
from ingest import metrics
from ingest.body import Decoded, UnsupportedMediaType, decode, parse_form
from ingest.producer import AsyncProducer
from ingest.signatures import SIGNATURE_HEADERS, AccountKeys

logger = logging.getLogger(__name__)

_NO_CONTENT: list[Message] = [
    {"type": "http.response.start", "status": 204, "headers": []},
    {"type": "http.response.body", "body": b""},
]


class _Rejected(Exception):
    def __init__(self, status: int, reason: str, detail: str, sid: str | None = None) -> None:
        self.status, self.reason, self.detail, self.sid = status, reason, detail, sid


class _Disconnected(Exception):
    pass


class CallbackEndpoint:
    """The ASGI app of the callback route; the producer comes from the lifespan state."""

    def __init__(self, settings: Settings, signatures: AccountKeys) -> None:
        self._settings = settings
        self._signatures = signatures
        self._topics = {
            k: topic_name(k.spec.raw_topic, settings.topic_prefix) for k in CallbackKind
        }
        self._retry_after = str(settings.retry_after_s).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_kind: str = scope["path_params"]["kind"]
        try:
            kind = CallbackKind(raw_kind)
        except ValueError:
            detail = f"no callback kind {raw_kind[:40]!r}"
            return await _reject(send, "unknown", None, _Rejected(404, "unknown_kind", detail))
        try:
            envelope = await self._receive(kind, scope, receive)
        except _Rejected as rejected:
            return await _reject(send, kind, rejected.sid, rejected)
        except _Disconnected:
            logger.info("%s callback: the client went away before sending its body", kind)
            return

        started = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        try:
            producer: AsyncProducer = scope["state"]["producer"]
            await producer.send(
                self._topics[kind],
                envelope.sid.encode(),
                envelope.to_bytes(),
                self._settings.produce_timeout_s,
            )
        except DeliveryFailed as exc:
            logger.error("kafka did not take %s callback sid=%s: %s", kind, envelope.sid, exc)
            metrics.rejected(kind, "kafka_unavailable", 503)
            return await _respond(
                send,
                503,
                {"error": "unavailable", "detail": "Kafka is not taking callbacks"},
                [(b"retry-after", self._retry_after)],
            )
        finally:
            metrics.IN_FLIGHT.dec()
        metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)
        metrics.ACCEPTED[kind].inc()
        params = envelope.params
        logger.info(
            "accepted %s sid=%s status=%s error_code=%s",
            kind.value,
            envelope.sid,
            params.get(kind.spec.status_param or "") or "-",
            params.get("ErrorCode") or "-",
        )
        for message in _NO_CONTENT:
            await send(message)

    async def _receive(self, kind: CallbackKind, scope: Scope, receive: Receive) -> Envelope:
        """The callback as an envelope, or `_Rejected` saying why not."""
        headers = dict(scope["headers"])
        raw = await self._read_body(headers, receive)
        try:
            decoded = decode(headers.get(b"content-type", b"").decode("latin-1"), raw)
            tags = parse_form(scope["query_string"].decode(errors="replace"), strict=False)
        except UnsupportedMediaType as exc:
            raise _Rejected(415, "unsupported_media_type", exc.reason) from None
        except BadCallback as exc:
            raise _Rejected(400, "malformed", exc.reason) from None
        except ValueError as exc:
            raise _Rejected(400, "malformed", f"undecodable query string: {exc}") from None
        sid_param = kind.spec.sid_param
        sid = decoded.params.get(sid_param, "").strip()
        if not sid:
            raise _Rejected(400, "missing_sid", f"{sid_param} is missing")
        return Envelope(
            kind=kind,
            sid=sid,
            params=decoded.params,
            tags=tags,
            received_at=time.time(),
            signature=self._verdict(scope, headers, raw, decoded, sid),
        )

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        limit = self._settings.max_body_bytes
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _verdict(
        self, scope: Scope, headers: dict[bytes, bytes], raw: bytes, decoded: Decoded, sid: str
    ) -> SignatureVerdict:
        """VALID or UNCHECKED (no key for the callback's account); a missing or wrong
        signature is rejected."""
        checker = self._signatures.for_account(decoded.params.get("AccountSid", ""))
        if checker is None:
            return SignatureVerdict.UNCHECKED
        signature = next(
            (headers[name].decode("latin-1") for name in SIGNATURE_HEADERS if name in headers),
            None,
        )
        if not signature:
            raise _Rejected(403, "bad_signature", "signature missing", sid)
        query = scope["query_string"].decode("latin-1")
        path_and_query = scope["path"] + (f"?{query}" if query else "")
        url = checker.public_url(path_and_query) or str(URL(scope=scope))
        form = None if decoded.is_json else decoded.params
        if not checker.verify(url, signature, raw=raw, form=form):
            raise _Rejected(403, "bad_signature", f"signature does not match {url}", sid)
        return SignatureVerdict.VALID


def _too_large(limit: int) -> _Rejected:
    return _Rejected(413, "too_large", f"body over {limit} bytes")


async def _reject(send: Send, kind: str, sid: str | None, rejected: _Rejected) -> None:
    logger.warning(
        "rejected %s callback sid=%s: %s (%d %s)",
        kind,
        sid or "-",
        rejected.detail,
        rejected.status,
        rejected.reason,
    )
    metrics.rejected(kind, rejected.reason, rejected.status)
    await _respond(send, rejected.status, {"error": rejected.reason, "detail": rejected.detail})


async def _respond(
    send: Send,
    status: int,
    body: dict[str, str],
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    content = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})
