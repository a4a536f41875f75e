"""A local fake of SignalWire's LaML (Twilio-compatible) REST API for tests.

Serves Messages (create, fetch) and Recordings (fetch) over plain HTTP on an
ephemeral 127.0.0.1 port, records every request, and can be told to fail. Point
`Settings.signalwire_api_base` at `FakeSignalWire.base_url`.
"""

from __future__ import annotations

import base64
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

API_VERSION = "2010-04-01"
E164 = re.compile(r"\+[1-9]\d{1,14}")  # what the provider takes as a phone number
_ERROR_CODES = {400: 21211, 401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}


def rfc2822(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    form: dict[str, str]
    headers: dict[str, str]

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(value).decode().partition(":")
        return user, password


def _error(status: int, message: str, code: int | None = None) -> JSONResponse:
    code = code or _ERROR_CODES.get(status, status)
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status)


class FakeSignalWire:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._messages: dict[str, dict[str, Any]] = {}
        self._recordings: dict[str, dict[str, Any]] = {}
        self._created: list[dict[str, str]] = []
        self._failures: list[tuple[int, bool]] = []  # (status, only_creates)
        prefix = f"/{API_VERSION}/Accounts/{{account}}"
        self.app = Starlette(
            routes=[
                Route(f"{prefix}/Messages.json", self._create_message, methods=["POST"]),
                Route(f"{prefix}/Messages/{{sid}}.json", self._fetch_message, methods=["GET"]),
                Route(f"{prefix}/Recordings/{{sid}}.json", self._fetch_recording, methods=["GET"]),
            ]
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # --- lifecycle ---
    def start(self) -> FakeSignalWire:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake SignalWire did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeSignalWire:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- test controls ---
    def fail_next(self, n: int, status: int = 500, *, only_creates: bool = False) -> None:
        with self._lock:
            self._failures.extend([(status, only_creates)] * n)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._messages.clear()
            self._recordings.clear()
            self._created.clear()
            self._failures.clear()

    def sent_messages(self) -> list[dict[str, str]]:
        with self._lock:
            return [dict(m) for m in self._created]

    def set_message(
        self,
        sid: str,
        *,
        status: str = "delivered",
        error_code: int | None = None,
        error_message: str | None = None,
        to: str = "+15550000002",
        from_: str = "+15550000001",
        body: str = "",
        date_sent: datetime | None = None,
        account: str = "PJ00000000000000000000000000000000",
    ) -> None:
        message = self._message_json(account, sid, to=to, from_=from_, body=body, status=status)
        message.update(
            error_code=error_code,
            error_message=error_message,
            date_sent=rfc2822(date_sent) if date_sent else None,
        )
        with self._lock:
            self._messages[sid] = message

    def set_recording(self, sid: str, **fields: Any) -> None:
        account = fields.pop("account", "PJ00000000000000000000000000000000")
        now = rfc2822(datetime.now(UTC))
        recording: dict[str, Any] = {
            "account_sid": account,
            "api_version": API_VERSION,
            "call_sid": new_sid("CA"),
            "conference_sid": None,
            "date_created": now,
            "date_updated": now,
            "start_time": now,
            "duration": "12",
            "sid": sid,
            "price": None,
            "price_unit": "USD",
            "status": "completed",
            "channels": 1,
            "source": "RecordVerb",
            "error_code": None,
            "encryption_details": None,
            "uri": f"/{API_VERSION}/Accounts/{account}/Recordings/{sid}.json",
        }
        recording.update(fields)
        with self._lock:
            self._recordings[sid] = recording

    # --- handlers ---
    async def _intercept(
        self, request: Request, *, create: bool
    ) -> tuple[RecordedRequest, JSONResponse | None]:
        """Record the request; the second item is the answer if it must fail."""
        # parsed by hand: starlette form parsing needs python-multipart, not a dependency
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        record = RecordedRequest(request.method, request.url.path, form, dict(request.headers))
        with self._lock:
            self.requests.append(record)
            index = next(
                (i for i, (_, only) in enumerate(self._failures) if create or not only), None
            )
            status = self._failures.pop(index)[0] if index is not None else None
        if status is not None:
            return record, _error(status, f"Injected failure (HTTP {status})")
        if record.basic_auth is None:
            return record, _error(401, "Authenticate")
        return record, None

    @staticmethod
    def _message_json(
        account: str, sid: str, *, to: str, from_: str, body: str, status: str
    ) -> dict[str, Any]:
        now = rfc2822(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{account}/Messages/{sid}"
        return {
            "sid": sid,
            "account_sid": account,
            "to": to,
            "from": from_,
            "body": body,
            "status": status,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "error_code": None,
            "error_message": None,
            "num_segments": "1",
            "num_media": "0",
            "direction": "outbound-api",
            "api_version": API_VERSION,
            "price": None,
            "price_unit": "USD",
            "messaging_service_sid": None,
            "uri": f"{uri}.json",
            "subresource_uris": {"media": f"{uri}/Media.json"},
        }

    async def _create_message(self, request: Request) -> JSONResponse:
        record, failure = await self._intercept(request, create=True)
        if failure is not None:
            return failure
        params = record.form
        if not params.get("To"):
            return _error(400, "A 'To' phone number is required.", 21604)
        if not E164.fullmatch(params["To"]):
            invalid = f"The 'To' number {params['To']} is not a valid phone number."
            return _error(400, invalid, 21211)
        if not params.get("Body") and not params.get("MediaUrl"):
            return _error(400, "Message body is required.", 21602)
        account, sid = request.path_params["account"], new_sid("SM")
        message = self._message_json(
            account,
            sid,
            to=params["To"],
            from_=params.get("From", ""),
            body=params.get("Body", ""),
            status="queued",
        )
        with self._lock:
            self._messages[sid] = message
            self._created.append(dict(params))
        return JSONResponse(message, status_code=201)

    async def _fetch(self, request: Request, store: dict[str, dict[str, Any]]) -> JSONResponse:
        _, failure = await self._intercept(request, create=False)
        if failure is not None:
            return failure
        with self._lock:
            found = store.get(request.path_params["sid"])
        if found is None:
            return _error(404, f"The requested resource {request.url.path} was not found")
        return JSONResponse(found)

    async def _fetch_message(self, request: Request) -> JSONResponse:
        return await self._fetch(request, self._messages)

    async def _fetch_recording(self, request: Request) -> JSONResponse:
        return await self._fetch(request, self._recordings)
