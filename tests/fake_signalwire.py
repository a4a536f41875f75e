"""A local fake of SignalWire's LaML (Twilio-compatible) REST API for tests.

Serves Messages (create, fetch, list), Calls (fetch, list) and Recordings (fetch) over
plain HTTP on an ephemeral 127.0.0.1 port, records every request with the time it came
(the log tests assert on: what was asked, and how fast), and can be told to fail: the
next n requests with a status (a 429 with its `Retry-After`). It can hold the truth of
a campaign (`learn`): every message's and call's final status, as the REST API knows it
even when the callbacks were lost. Lists page as the provider's do (`next_page_uri`).
Point `Settings.signalwire_api_base` at `FakeSignalWire.base_url`.
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
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from simulate.callbacks import Entity

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
    at: float = 0.0  # time.monotonic() when it came
    query: dict[str, str] | None = None

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(value).decode().partition(":")
        return user, password


def _error(
    status: int, message: str, code: int | None = None, retry_after: float | None = None
) -> JSONResponse:
    code = code or _ERROR_CODES.get(status, status)
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return JSONResponse(body, status_code=status, headers=headers)


class FakeSignalWire:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._messages: dict[str, dict[str, Any]] = {}
        self._recordings: dict[str, dict[str, Any]] = {}
        self._calls: dict[str, dict[str, Any]] = {}
        self._sent_at: dict[str, float] = {}  # SID -> DateSent / StartTime, for the lists
        self._created: list[dict[str, str]] = []
        # (status, only_creates, Retry-After)
        self._failures: list[tuple[int, bool, float | None]] = []
        prefix = f"/{API_VERSION}/Accounts/{{account}}"
        self.app = Starlette(
            routes=[
                Route(f"{prefix}/Messages.json", self._create_message, methods=["POST"]),
                Route(f"{prefix}/Messages.json", self._list_messages, methods=["GET"]),
                Route(f"{prefix}/Messages/{{sid}}.json", self._fetch_message, methods=["GET"]),
                Route(f"{prefix}/Calls.json", self._list_calls, methods=["GET"]),
                Route(f"{prefix}/Calls/{{sid}}.json", self._fetch_call, methods=["GET"]),
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
    def fail_next(
        self,
        n: int,
        status: int = 500,
        *,
        only_creates: bool = False,
        retry_after: float | None = None,
    ) -> None:
        """The next n requests (creates only, with `only_creates`) answer `status`; a 429
        says `Retry-After: retry_after` when given."""
        with self._lock:
            self._failures.extend([(status, only_creates, retry_after)] * n)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._messages.clear()
            self._recordings.clear()
            self._calls.clear()
            self._sent_at.clear()
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
        num_media: int = 0,
        num_segments: int = 1,
    ) -> None:
        message = self._message_json(account, sid, to=to, from_=from_, body=body, status=status)
        message.update(
            error_code=error_code,
            error_message=error_message,
            date_sent=rfc2822(date_sent) if date_sent else None,
            num_media=str(num_media),
            num_segments=str(num_segments),
        )
        with self._lock:
            self._messages[sid] = message
            self._sent_at[sid] = (date_sent or datetime.now(UTC)).timestamp()

    def set_call(
        self,
        sid: str,
        *,
        status: str = "completed",
        duration: int | None = None,
        to: str = "+15550000002",
        from_: str = "+15550000001",
        direction: str = "outbound-api",
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        account: str = "PJ00000000000000000000000000000000",
    ) -> None:
        now = datetime.now(UTC)
        start, end = start_time or now, end_time or now
        uri = f"/{API_VERSION}/Accounts/{account}/Calls/{sid}"
        call = {
            "sid": sid,
            "account_sid": account,
            "parent_call_sid": None,
            "to": to,
            "from": from_,
            "status": status,
            "direction": direction,
            "api_version": API_VERSION,
            "duration": None if duration is None else str(duration),
            "start_time": rfc2822(start),
            "end_time": rfc2822(end),
            "date_created": rfc2822(start),
            "date_updated": rfc2822(end),
            "price": None,
            "price_unit": "USD",
            "answered_by": None,
            "caller_name": None,
            "forwarded_from": None,
            "uri": f"{uri}.json",
            "subresource_uris": {"recordings": f"{uri}/Recordings.json"},
        }
        with self._lock:
            self._calls[sid] = call
            self._sent_at[sid] = start.timestamp()

    def learn(self, entities: list[Entity], *, at: datetime | None = None) -> int:
        """The provider's truth of simulated messages and calls: each one's final status
        (with its error code, media, duration), as `Messages/{sid}` and `Calls/{sid}` then
        answer whatever callbacks were lost. Returns how many it learned."""
        from contract.kinds import CallbackKind

        when = at or datetime.now(UTC)
        learned = 0
        for e in entities:
            if e.kind is CallbackKind.SMS:
                self.set_message(
                    e.sid,
                    status=e.final,
                    error_code=int(e.error_code) if e.error_code else None,
                    to=e.to,
                    from_=e.from_,
                    body=e.body,
                    date_sent=when,
                    account=e.account,
                    num_media=e.num_media,
                )
            elif e.kind in (CallbackKind.VOICE, CallbackKind.INBOUND_CALL):
                self.set_call(
                    e.sid,
                    status=e.final,
                    duration=e.duration if e.final == "completed" else None,
                    to=e.to,
                    from_=e.from_,
                    direction="inbound" if e.kind is CallbackKind.INBOUND_CALL else "outbound-api",
                    start_time=when,
                    end_time=when,
                    account=e.account,
                )
            else:
                continue
            learned += 1
        return learned

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
        record = RecordedRequest(
            request.method,
            request.url.path,
            form,
            dict(request.headers),
            time.monotonic(),
            dict(request.query_params),
        )
        with self._lock:
            self.requests.append(record)
            index = next(
                (i for i, (_, only, _) in enumerate(self._failures) if create or not only), None
            )
            failure = self._failures.pop(index) if index is not None else None
        if failure is not None:
            status, _, retry_after = failure
            return record, _error(status, f"Injected failure (HTTP {status})", None, retry_after)
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

    async def _fetch_call(self, request: Request) -> JSONResponse:
        return await self._fetch(request, self._calls)

    async def _list(
        self, request: Request, store: dict[str, dict[str, Any]], name: str, date_param: str
    ) -> JSONResponse:
        """A page of `store`'s records (From and `date_param>=` filters), newest first."""
        record, failure = await self._intercept(request, create=False)
        if failure is not None:
            return failure
        query = record.query or {}
        since_text = query.get(f"{date_param}>") or query.get(f"{date_param}>=")
        since = (
            datetime.strptime(since_text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
            if since_text
            else None
        )
        size, number = int(query.get("PageSize", 50)), int(query.get("Page", 0))
        with self._lock:
            found = [
                r
                for sid, r in store.items()
                if (not query.get("From") or r["from"] == query["From"])
                and (since is None or self._sent_at.get(sid, 0.0) >= since)
            ]
            found.sort(key=lambda r: (-self._sent_at.get(r["sid"], 0.0), r["sid"]))
        page = found[number * size : (number + 1) * size]
        path = request.url.path
        following = {**query, "Page": str(number + 1), "PageSize": str(size)}
        more = (number + 1) * size < len(found)
        return JSONResponse(
            {
                name: page,
                "page": number,
                "page_size": size,
                "uri": f"{path}?{urlencode(query)}",
                "next_page_uri": f"{path}?{urlencode(following)}" if more else None,
            }
        )

    async def _list_messages(self, request: Request) -> JSONResponse:
        return await self._list(request, self._messages, "messages", "DateSent")

    async def _list_calls(self, request: Request) -> JSONResponse:
        return await self._list(request, self._calls, "calls", "StartTime")
