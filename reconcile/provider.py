"""The provider's REST API as the reconcile stage uses it: paced, and polite when refused.

Every request (retries included) takes a token from one `TokenBucket`, so the worker
never makes more than `reconcile_rate` requests a second. A 429 holds the bucket for
its `Retry-After` (capped by `reconcile_max_retry_after_s`), so every thread waits as
told, not only the one refused; 5xx and transport errors back off exponentially
(`rest_retry_base_s`, doubling) up to `rest_max_attempts` tries. A 404 is an answer:
the provider does not know the SID. Resources come back as plain dicts of the fields
a callback carries (`Resource`), so that what is made of them is a pure function.

The SDK's client keeps the last response (with its headers, where Retry-After is) per
client, so each thread has its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from prometheus_client import Counter
from signalwire.rest import Client
from twilio.base.exceptions import TwilioRestException

from contract.settings import Settings
from sinks.signalwire.client import make_client

logger = logging.getLogger(__name__)

REQUESTS = Counter(
    "switchboard_reconcile_requests_total",
    "REST requests of the reconcile stage by what and answer (ok, not_found, 429, 5xx, "
    "transport, error)",
    ["op", "answer"],
)
RATE_LIMITED = Counter(
    "switchboard_reconcile_rate_limited_total", "429 answers waited out by the reconcile stage"
)


class ProviderError(Exception):
    """A request that did not succeed after its tries (or was given up: stopping)."""


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `hold(seconds)` gives none
    until then. `take` blocks; False if `stopped` was set meanwhile."""

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = time.monotonic()
        self._held_until = 0.0
        self._lock = threading.Lock()

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._held_until = max(self._held_until, time.monotonic() + seconds)
            self._tokens = 0.0  # nothing saved up spills out when the hold ends

    def take(self, stopped: threading.Event) -> bool:
        while True:
            with self._lock:
                now = time.monotonic()
                if now >= self._held_until:
                    start = max(self._at, self._held_until)
                    self._tokens = min(self.burst, self._tokens + (now - start) * self.rate)
                    self._at = now
                    if self._tokens >= 1.0:
                        self._tokens -= 1.0
                        return True
                    wait = (1.0 - self._tokens) / self.rate
                else:
                    wait = self._held_until - now
            if stopped.wait(wait):
                return False


Resource = dict[str, Any]


def _epoch(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


def message_resource(m: Any) -> Resource:
    return {
        "sid": m.sid,
        "status": m.status,
        "error_code": m.error_code,
        "account_sid": m.account_sid,
        "from": m.from_,
        "to": m.to,
        "body": m.body,
        "num_media": m.num_media,
        "num_segments": m.num_segments,
        "direction": m.direction,
        "date_sent": _epoch(m.date_sent),
        "date_updated": _epoch(m.date_updated),
    }


def call_resource(c: Any) -> Resource:
    return {
        "sid": c.sid,
        "status": c.status,
        "account_sid": c.account_sid,
        "from": c.from_,
        "to": c.to,
        "direction": c.direction,
        "api_version": c.api_version,
        "duration": c.duration,
        "start_time": _epoch(c.start_time),
        "end_time": _epoch(c.end_time),
        "date_updated": _epoch(c.date_updated),
    }


def _next_page(page: Any) -> Callable[[Client], Any]:
    return lambda _client: page.next_page()


@dataclass(slots=True)
class _Tries:
    attempts: int = 0
    backoff: float = 0.0


class Provider:
    def __init__(self, settings: Settings, stopped: threading.Event | None = None) -> None:
        if not settings.signalwire_configured:
            raise ProviderError(
                "reconcile needs the REST API: set SIGNALWIRE_PROJECT_ID, SIGNALWIRE_TOKEN "
                "and SIGNALWIRE_SPACE_URL"
            )
        self.settings = settings
        self.stopped = stopped or threading.Event()
        self.bucket = TokenBucket(settings.reconcile_rate)
        self._local = threading.local()

    def _client(self) -> Client:
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            client = make_client(self.settings)
            assert client is not None  # credentials are checked in __init__
            self._local.client = client
        return client

    def _retry_after(self, client: Client) -> float:
        response = client.http_client.last_response
        headers = getattr(response, "headers", None) or {}
        text = headers.get("Retry-After") or headers.get("retry-after")
        try:
            seconds = float(text) if text is not None else 1.0
        except ValueError:
            seconds = 1.0
        return min(max(seconds, 0.0), self.settings.reconcile_max_retry_after_s)

    def call(self, op: str, what: str, request: Callable[[Client], Any]) -> Any | None:
        """`request(client)` paced and retried; None on a 404."""
        settings = self.settings
        tries = _Tries(backoff=settings.rest_retry_base_s)
        while True:
            if not self.bucket.take(self.stopped):
                raise ProviderError(f"{what}: given up (stopping)")
            tries.attempts += 1
            client = self._client()
            try:
                result = request(client)
                REQUESTS.labels(op, "ok").inc()
                return result
            except TwilioRestException as exc:
                if exc.status == 404:
                    REQUESTS.labels(op, "not_found").inc()
                    return None
                if exc.status == 429:
                    REQUESTS.labels(op, "429").inc()
                    RATE_LIMITED.inc()
                    seconds = self._retry_after(client)
                    logger.warning("%s: 429, waiting %.1f s as told (Retry-After)", what, seconds)
                    self.bucket.hold(seconds)
                    if tries.attempts >= settings.rest_max_attempts:
                        raise ProviderError(
                            f"{what}: still 429 after {tries.attempts} tries"
                        ) from exc
                    continue
                if exc.status < 500:
                    REQUESTS.labels(op, "error").inc()
                    raise ProviderError(f"{what}: HTTP {exc.status} {exc.msg}") from exc
                REQUESTS.labels(op, "5xx").inc()
                reason = f"HTTP {exc.status}"
            except (requests.ConnectionError, requests.Timeout) as exc:
                REQUESTS.labels(op, "transport").inc()
                reason = str(exc)
            if tries.attempts >= settings.rest_max_attempts:
                raise ProviderError(f"{what}: {reason} after {tries.attempts} tries")
            logger.warning(
                "%s: %s; try %d in %.1f s", what, reason, tries.attempts + 1, tries.backoff
            )
            if self.stopped.wait(tries.backoff):
                raise ProviderError(f"{what}: given up (stopping)")
            tries.backoff = min(tries.backoff * 2, settings.sink_retry_max_s)

    def fetch_message(self, sid: str) -> Resource | None:
        found = self.call(
            "fetch_message", f"fetch message {sid}", lambda c: c.messages(sid).fetch()
        )
        return None if found is None else message_resource(found)

    def fetch_call(self, sid: str) -> Resource | None:
        found = self.call("fetch_call", f"fetch call {sid}", lambda c: c.calls(sid).fetch())
        return None if found is None else call_resource(found)

    def list_messages(
        self, from_: str, since: datetime, page_size: int = 100
    ) -> Iterator[Resource]:
        """Messages sent from `from_` since `since`, page by page (`DateSent>`)."""
        page = self.call(
            "list_messages",
            f"list messages from {from_}",
            lambda c: c.messages.page(from_=from_, date_sent_after=since, page_size=page_size),
        )
        while page is not None:
            for m in page:
                yield message_resource(m)
            if not page.next_page_url:
                return
            page = self.call("list_messages", f"next page from {from_}", _next_page(page))

    def list_calls(self, from_: str, since: datetime, page_size: int = 100) -> Iterator[Resource]:
        """Calls made from `from_` since `since`, page by page (`StartTime>`)."""
        page = self.call(
            "list_calls",
            f"list calls from {from_}",
            lambda c: c.calls.page(from_=from_, start_time_after=since, page_size=page_size),
        )
        while page is not None:
            for call in page:
                yield call_resource(call)
            if not page.next_page_url:
                return
            page = self.call("list_calls", f"next page from {from_}", _next_page(page))
