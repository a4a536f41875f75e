"""Callback signatures, checked with the signalwire SDK's own `RequestValidator`.

The provider signs the URL it called, which is not the URL we see behind a proxy
or tunnel: `SWITCHBOARD_PUBLIC_URL` gives the public base, and the request's path
and query are appended to it.
"""

from __future__ import annotations

import logging

from signalwire.request_validator import RequestValidator

logger = logging.getLogger(__name__)

# ASGI header names: lower-case bytes. LaML (compatibility) callbacks may carry the second.
SIGNATURE_HEADERS = (b"x-signalwire-signature", b"x-twilio-signature")


class SignatureChecker:
    def __init__(self, key: str, public_url: str | None) -> None:
        self._validator = RequestValidator(key)
        self._public_url = public_url.rstrip("/") if public_url else None

    def public_url(self, path_and_query: str) -> str | None:
        """The URL the provider signed, or None to use the request's own URL."""
        if self._public_url is None:
            return None
        return self._public_url + path_and_query

    def verify(
        self, url: str, signature: str | None, *, raw: bytes, form: dict[str, str] | None
    ) -> bool:
        """`form` for form posts (the Twilio scheme), None for JSON (signed over the raw body)."""
        if not signature:
            return False
        try:
            if form is not None:
                return bool(self._validator.validate(url, form, signature))
            return bool(self._validator.validate(url, raw.decode("utf-8"), signature))
        except (TypeError, ValueError, AttributeError, UnicodeDecodeError) as exc:
            # The SDK raises instead of returning False on some malformed input.
            logger.info("signature check raised %s: treating as invalid", type(exc).__name__)
            return False
