"""Thin wrapper around the real SignalWire REST SDK (Twilio-compatible LaML API).

`make_client` builds the SDK client from settings (or None in dry-run mode), and
`Clients` each account's (SWITCHBOARD_ACCOUNTS);
`send_sms` and `fetch_message` turn SDK and transport failures into
`SignalWireError`, which says whether a retry can help. The SDK is synchronous:
call these from a thread pool in async code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import requests
from prometheus_client import Counter, Histogram
from signalwire.rest import Client
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient

from contract.settings import Settings

logger = logging.getLogger(__name__)
# The SDK logs every request's payload (numbers and message bodies: personal data) at INFO.
logging.getLogger("twilio.http_client").setLevel(logging.WARNING)

HTTP_TIMEOUT_S = 10.0
_warned_dry_run = False

T = TypeVar("T")

REQUESTS = Counter(
    "switchboard_sink_signalwire_requests_total",
    "SignalWire REST calls by outcome (ok, retryable, failed)",
    ["op", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "switchboard_sink_signalwire_request_seconds", "Time of one SignalWire REST call", ["op"]
)


class SignalWireError(Exception):
    """A failed REST call; `retryable` for 429, 5xx and transport errors."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        if retryable is None:
            retryable = status is None or status == 429 or status >= 500
        self.retryable = retryable


def make_client(settings: Settings) -> Client | None:
    """The real SDK client, or None (with one warning) when credentials are unset."""
    global _warned_dry_run
    if not settings.signalwire_configured:
        if not _warned_dry_run:
            logger.warning("SignalWire credentials not set: outbound SMS runs in dry-run mode")
            _warned_dry_run = True
        return None
    assert settings.signalwire_token is not None  # implied by signalwire_configured
    client = Client(
        settings.signalwire_project_id,
        settings.signalwire_token.get_secret_value(),
        signalwire_space_url=settings.signalwire_space_url,
        http_client=TwilioHttpClient(timeout=HTTP_TIMEOUT_S),
    )
    if settings.signalwire_api_base:
        # The SDK forces https:// on the space URL; the LaML domain's base_url is
        # what every /2010-04-01/Accounts/... resource is joined onto.
        client.api.base_url = settings.signalwire_api_base.rstrip("/")
    return client


class Clients:
    """The SDK client of each account, made on first use: an account listed in
    SWITCHBOARD_ACCOUNTS with credentials of its own gets a client of its own, every
    other account the default's. Not shared between threads (the SDK's HTTP session)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._made: dict[str, Client | None] = {}

    def for_account(self, account_sid: str | None) -> Client | None:
        """None: dry run (no credentials for that account)."""
        key = account_sid if account_sid in self._settings.accounts else ""
        if key not in self._made:
            self._made[key] = make_client(self._settings.for_account(key))
        return self._made[key]


def _call(action: str, fn: Callable[[], T], op: str = "other") -> T:
    started = time.perf_counter()
    try:
        result = fn()
    except TwilioRestException as exc:
        error = SignalWireError(
            f"{action}: HTTP {exc.status} {exc.msg}", status=exc.status, code=exc.code
        )
        REQUESTS.labels(op, "retryable" if error.retryable else "failed").inc()
        raise error from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        REQUESTS.labels(op, "retryable").inc()
        raise SignalWireError(f"{action}: {exc}") from exc
    except Exception as exc:  # the SDK choking on an answer: final, and said so
        REQUESTS.labels(op, "failed").inc()
        raise SignalWireError(
            f"{action}: unexpected {type(exc).__name__}: {exc}", retryable=False
        ) from exc
    finally:
        REQUEST_SECONDS.labels(op).observe(time.perf_counter() - started)
    REQUESTS.labels(op, "ok").inc()
    return result


@dataclass(frozen=True, slots=True)
class Attempted(Generic[T]):
    """What came of a call and its retries: a value, or the last error."""

    value: T | None
    error: SignalWireError | None
    attempts: int
    interrupted: bool  # gave up early because the caller is stopping


def retrying(
    what: str,
    call: Callable[[], T],
    *,
    settings: Settings,
    wait: Callable[[float], bool],
) -> Attempted[T]:
    """Call, retrying 429, 5xx and transport errors with exponential backoff
    (`rest_retry_base_s`, doubling, capped by `sink_retry_max_s`) up to
    `rest_max_attempts` tries; any other error is final at once (no retry storm).
    `wait(seconds)` sleeps between tries and returns False to give up (stopping)."""
    backoff = settings.rest_retry_base_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return Attempted(call(), None, attempt, False)
        except SignalWireError as exc:
            if not exc.retryable or attempt >= settings.rest_max_attempts:
                return Attempted(None, exc, attempt, False)
            logger.warning(
                "%s failed (%s); try %d of %d in %.1f s",
                what,
                exc,
                attempt + 1,
                settings.rest_max_attempts,
                backoff,
            )
            if not wait(backoff):
                return Attempted(None, exc, attempt, True)
            backoff = min(backoff * 2, settings.sink_retry_max_s)


def send_sms(client: Client, *, from_: str, to: str, body: str) -> str:
    """Send one SMS; returns the message sid."""
    message = _call(
        "send SMS", lambda: client.messages.create(from_=from_, to=to, body=body), "send"
    )
    return str(message.sid)


def fetch_message(client: Client, sid: str) -> dict[str, Any]:
    """The fields of one message that explain its delivery outcome."""
    m = _call(f"fetch message {sid}", lambda: client.messages(sid).fetch(), "fetch")
    date_sent = m.date_sent if isinstance(m.date_sent, datetime) else None
    return {
        "error_message": m.error_message,
        "error_code": m.error_code,
        "date_sent": date_sent,
        "to": m.to,
        "from_": m.from_,
        "body": m.body,
        "status": m.status,
    }
