"""Callback signatures, checked with the signalwire SDK's own `RequestValidator`.

The provider signs the URL it called, which is not the URL we see behind a proxy
or tunnel: `SWITCHBOARD_PUBLIC_URL` gives the public base, and the request's path
and query are appended to it.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

from signalwire.request_validator import RequestValidator

logger = logging.getLogger(__name__)

# ASGI header names: lower-case bytes. LaML (compatibility) callbacks may carry the second.
SIGNATURE_HEADERS = (b"x-signalwire-signature", b"x-twilio-signature")
DEFAULT_PORTS = {"http": 80, "https": 443}


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
        if not signature or not self._validate(url, signature, raw, form):
            return False
        default = _with_default_port(url)
        if default is None:
            return True
        # The SDK also accepts the URL without its port, whatever the port, so a signature
        # made for https://host/ would pass at https://host:8443/. Only a default port may be
        # left out: refuse what validates just as well at the same URL on the default port.
        return not self._validate(default, signature, raw, form)

    def _validate(self, url: str, signature: str, raw: bytes, form: dict[str, str] | None) -> bool:
        try:
            if form is not None:
                return bool(self._validator.validate(url, form, signature))
            return bool(self._validator.validate(url, raw.decode("utf-8"), signature))
        except (TypeError, ValueError, AttributeError, UnicodeDecodeError) as exc:
            # The SDK raises instead of returning False on some malformed input.
            logger.info("signature check raised %s: treating as invalid", type(exc).__name__)
            return False


def _with_default_port(url: str) -> str | None:
    """The same URL on its scheme's default port, if it names another port; else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    default = DEFAULT_PORTS.get(parts.scheme)
    if port is None or default is None or port == default:
        return None
    host = parts.netloc.rsplit(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{host}:{default}"))
