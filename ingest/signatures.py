"""Callback signatures, checked with the signalwire SDK's own `RequestValidator`.

The provider signs the URL it called, which is not the URL we see behind a proxy
or tunnel: `SWITCHBOARD_PUBLIC_URL` gives the public base, and the request's path
and query are appended to it.
"""

from __future__ import annotations

import logging

from signalwire.request_validator import RequestValidator

logger = logging.getLogger(__name__)

SIGNATURE_HEADERS = ("x-signalwire-signature", "x-twilio-signature")


class SignatureChecker:
    def __init__(self, key: str, public_url: str | None) -> None:
        self._validator = RequestValidator(key)
        self._public_url = public_url.rstrip("/") if public_url else None

    def signed_url(self, request_url: str, path_and_query: str) -> str:
        if self._public_url is None:
            return request_url
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
