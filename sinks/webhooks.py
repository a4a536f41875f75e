"""HTTP deliveries of alert notifications: a webhook signed per Standard Webhooks
(https://www.standardwebhooks.com), and a Slack incoming-webhook message.

Standard Webhooks: `webhook-id` (the alert_id, the same on every retry, so a receiver
can de-duplicate), `webhook-timestamp` (Unix seconds of this try) and
`webhook-signature`, `v1,` + base64 of HMAC-SHA256 over `id.timestamp.body` with the
secret's key (the base64 after `whsec_`). A failed POST raises `SignalWireError`, whose
rule is any HTTP endpoint's: 429, 5xx and no answer are retried, other answers final.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import requests

from sinks.signalwire.client import SignalWireError

TIMEOUT_S = 10.0


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def post(url: str, body: bytes, *, msg_id: str, secret: str | None) -> str:
    """POST `body` (JSON); returns the answer's status as the delivery's receipt."""
    headers = {"content-type": "application/json", "webhook-id": msg_id}
    if secret is not None:
        timestamp = int(time.time())
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = sign(secret, msg_id, timestamp, body)
    try:
        answer = requests.post(url, data=body, headers=headers, timeout=TIMEOUT_S)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise SignalWireError(f"POST {msg_id}: {exc}") from exc
    if answer.status_code >= 300:
        raise SignalWireError(
            f"POST {msg_id}: HTTP {answer.status_code} {answer.text[:200]}",
            status=answer.status_code,
        )
    return f"HTTP {answer.status_code}"
