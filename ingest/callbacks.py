"""`POST /callbacks/{kind}` (and GET, for `StatusCallbackMethod=GET`): answers 204 only
once Kafka holds the callback.

Which format a body is in, and which callbacks it holds, is `contract.formats`'s
business: a form, a GET query or a JSON body posted to any kind's URL becomes one
envelope per callback (an Event Streams batch holds several; an SWML record event
posted to the voice URL goes to the recording topic), and 204 means all of them
are in Kafka.

The hot route is a plain ASGI endpoint rather than a `request -> response`
function: Starlette's Request and Response objects and its middleware stack
cost about a sixth of the edge's time per callback, and this route needs none
of them. Everything it rejects is
answered 4xx with one log line saying why, and never reaches Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import orjson
from starlette.datastructures import URL
from starlette.types import Message, Receive, Scope, Send

from contract import formats
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
            envelopes = await self._receive(kind, scope, receive)
        except _Rejected as rejected:
            return await _reject(send, kind, rejected.sid, rejected)
        except _Disconnected:
            logger.info("%s callback: the client went away before sending its body", kind)
            return

        started = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        producer: AsyncProducer = scope["state"]["producer"]
        try:
            if len(envelopes) == 1:
                await self._produce(producer, envelopes[0])
            else:
                await asyncio.gather(*(self._produce(producer, e) for e in envelopes))
        except DeliveryFailed as exc:
            sids = ",".join(e.sid for e in envelopes)
            logger.error("kafka did not take %s callback sid=%s: %s", kind, sids, exc)
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
        for envelope in envelopes:
            metrics.ACCEPTED[envelope.kind].inc()
            metrics.ACCEPTED_FORMAT[envelope.format].inc()
            params = envelope.params
            logger.info(
                "accepted %s sid=%s status=%s error_code=%s format=%s",
                envelope.kind.value,
                envelope.sid,
                params.get(envelope.kind.spec.status_param or "") or "-",
                params.get("ErrorCode") or "-",
                envelope.format.value,
            )
        for message in _NO_CONTENT:
            await send(message)

    async def _produce(self, producer: AsyncProducer, envelope: Envelope) -> None:
        await producer.send(
            self._topics[envelope.kind],
            envelope.sid.encode(),
            envelope.to_bytes(),
            self._settings.produce_timeout_s,
        )

    async def _receive(self, kind: CallbackKind, scope: Scope, receive: Receive) -> list[Envelope]:
        """The callbacks as envelopes, or `_Rejected` saying why not."""
        headers = dict(scope["headers"])
        query = scope["query_string"].decode(errors="replace")
        try:
            if scope["method"] == "GET":
                # the whole callback is in the query: the provider's parameters are
                # PascalCase, the callback URL's own tags (campaign=...) are not
                raw = b""
                everything = parse_form(query, strict=False)
                tags = {k: v for k, v in everything.items() if not k[:1].isupper()}
                decoded = Decoded(params={k: v for k, v in everything.items() if k[:1].isupper()})
            else:
                raw = await self._read_body(headers, receive)
                decoded = decode(headers.get(b"content-type", b"").decode("latin-1"), raw)
                tags = parse_form(query, strict=False)
        except UnsupportedMediaType as exc:
            raise _Rejected(415, "unsupported_media_type", exc.reason) from None
        except BadCallback as exc:
            raise _Rejected(400, "malformed", exc.reason) from None
        except ValueError as exc:
            raise _Rejected(400, "malformed", f"undecodable query string: {exc}") from None
        try:
            if decoded.params is not None:
                callbacks = [formats.compat(kind, decoded.params)]
            else:
                callbacks = formats.read(kind, decoded.data)
        except formats.UnknownFormat as exc:
            raise _Rejected(400, "unknown_format", exc.reason) from None
        except formats.UnhandledEvent as exc:
            raise _Rejected(400, "unhandled_event", exc.reason) from None
        except BadCallback as exc:
            raise _Rejected(400, "missing_sid", exc.reason) from None
        first = callbacks[0]
        account = first.params.get("AccountSid", "")
        signature = self._verdict(scope, headers, raw, decoded, first.sid, account)
        received_at = time.time()
        return [
            Envelope(
                kind=cb.kind,
                sid=cb.sid,
                params=cb.params,
                tags=cb.tags | tags if cb.tags else tags,
                received_at=received_at,
                signature=signature,
                format=cb.format,
                body=cb.body,
            )
            for cb in callbacks
        ]

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
        self,
        scope: Scope,
        headers: dict[bytes, bytes],
        raw: bytes,
        decoded: Decoded,
        sid: str,
        account: str,
    ) -> SignatureVerdict:
        """VALID or UNCHECKED (no key for the callback's account, whatever its format: a
        JSON event's project id is its AccountSid); a missing or wrong signature is
        rejected."""
        checker = self._signatures.for_account(account)
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
        # a GET is signed over its URL alone, as a form post with no parameters
        form = {} if scope["method"] == "GET" else decoded.params
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
