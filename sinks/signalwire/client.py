"""Thin wrapper around the real SignalWire REST SDK (Twilio-compatible LaML API).

`make_client` builds the SDK client from settings (or None in dry-run mode);
`send_sms` and `fetch_message` turn SDK and transport failures into
`SignalWireError`, which says whether a retry can help. The SDK is synchronous:
call these from a thread pool in async code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import requests
from signalwire.rest import Client
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient

from contract.settings import Settings

logger = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 10.0
_warned_dry_run = False

T = TypeVar("T")


class SignalWireError(Exception):
    """A failed REST call; `retryable` for 429, 5xx and transport errors."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = status is None or status == 429 or status >= 500


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


def _call(action: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except TwilioRestException as exc:
        raise SignalWireError(
            f"{action}: HTTP {exc.status} {exc.msg}", status=exc.status, code=exc.code
        ) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise SignalWireError(f"{action}: {exc}") from exc


def send_sms(client: Client, *, from_: str, to: str, body: str) -> str:
    """Send one SMS; returns the message sid."""
    message = _call("send SMS", lambda: client.messages.create(from_=from_, to=to, body=body))
    return str(message.sid)


def fetch_message(client: Client, sid: str) -> dict[str, Any]:
    """The fields of one message that explain its delivery outcome."""
    m = _call(f"fetch message {sid}", lambda: client.messages(sid).fetch())
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
