"""Callback signatures, checked with the signalwire SDK's own `RequestValidator`.

The provider signs the URL it called, which is not the URL we see behind a proxy
or tunnel: `SWITCHBOARD_PUBLIC_URL` gives the public base, and the request's path
and query are appended to it.

One scheme per format:
- Compatibility form posts: base64 HMAC-SHA1 over the URL and the parameters sorted by
  name (the Twilio scheme); a GET is the same with no parameters, over its full URL.
- SignalWire JSON webhooks (REST, SWML): lower-case hex HMAC-SHA1 over the URL and the
  raw body, in `X-SignalWire-Signature`.
- Twilio JSON webhooks: a `bodySHA256` query parameter, the hex SHA-256 of the raw
  body, and the Twilio scheme over the URL (which holds it) with no parameters.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterator
from urllib.parse import ParseResult, parse_qs, urlparse, urlsplit, urlunsplit

from pydantic import SecretStr

# the URL variants the SDK's validate signs (its own helpers, from the Twilio library)
from signalwire.request_validator import RequestValidator, add_port, remove_port

from contract.settings import Settings

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
        if not signature:
            return False
        if form is not None:
            return self._verify_form(url, signature, form)
        if "bodySHA256" in url:
            return self._verify_body_hash(url, signature, raw)
        if not self._validate(url, signature, raw):
            return False
        default = _with_default_port(url)
        if default is None:
            return True
        # The SDK also accepts the URL without its port, whatever the port, so a signature
        # made for https://host/ would pass at https://host:8443/. Only a default port may be
        # left out: refuse what validates just as well at the same URL on the default port.
        return not self._validate(default, signature, raw)

    def _verify_form(self, url: str, signature: str, form: dict[str, str]) -> bool:
        """What `verify` decides for a form post, from the SDK's own signature of each URL
        the rule above accepts, compared in constant time: one HMAC for a callback signed
        for the URL it was sent to, where the SDK's `validate` computes two, and four with
        the port rule (24 -> 12 µs per callback on the default port, 66 -> 12 µs on
        another, on a 2-core test machine). tests/test_ingest_signatures.py checks that
        it decides as `validate` and the rule do."""
        try:
            parsed = urlparse(url)
            port = parsed.port
        except ValueError:
            return False  # the SDK raises on such a port
        given = signature.encode(errors="replace")
        sign = self._validator.build_signature_with_compatibility
        try:
            return any(
                hmac.compare_digest(str(sign(candidate, form)).encode(), given)
                for candidate in _signed_urls(parsed, port)
            )
        except (TypeError, ValueError) as exc:
            logger.info("signature check raised %s: treating as invalid", type(exc).__name__)
            return False

    def _verify_body_hash(self, url: str, signature: str, raw: bytes) -> bool:
        """Twilio's JSON webhooks: the body's SHA-256 is in the signed URL."""
        try:
            declared = parse_qs(urlsplit(url).query).get("bodySHA256")
        except ValueError:
            return False
        if not declared:
            return self._validate(url, signature, raw)  # a name in a value, not the parameter
        digest = hashlib.sha256(raw).hexdigest()
        if not hmac.compare_digest(digest.encode(), declared[0].lower().encode(errors="replace")):
            return False
        return self._verify_form(url, signature, {})

    def _validate(self, url: str, signature: str, raw: bytes) -> bool:
        """The SDK's check of a JSON body: the SignalWire scheme, then the Twilio one."""
        try:
            return bool(self._validator.validate(url, raw.decode("utf-8"), signature))
        except (TypeError, ValueError, AttributeError, UnicodeDecodeError) as exc:
            # The SDK raises instead of returning False on some malformed input.
            logger.info("signature check raised %s: treating as invalid", type(exc).__name__)
            return False


class AccountKeys:
    """Each account's checker: a callback is verified with the signing key of the account
    it names (`AccountSid`), its own from SWITCHBOARD_ACCOUNTS or else the default."""

    def __init__(self, settings: Settings) -> None:
        def checker(key: SecretStr | None) -> SignatureChecker | None:
            return (
                None
                if key is None
                else SignatureChecker(key.get_secret_value(), settings.public_url)
            )

        self.default = checker(settings.signing_key)
        self._accounts = {
            sid: checker(settings.for_account(sid).signing_key) for sid in settings.accounts
        }

    def for_account(self, account_sid: str) -> SignatureChecker | None:
        """None: that account's callbacks are not signed (no key for it, no default)."""
        return self._accounts.get(account_sid, self.default)

    @property
    def unchecked(self) -> list[str]:
        """Who is not checked: "the default" and the accounts without a key."""
        names = [sid for sid, checker in self._accounts.items() if checker is None]
        return (["every other account"] if self.default is None else []) + names


def _signed_urls(parsed: ParseResult, port: int | None) -> Iterator[str]:
    """The URLs a form post may be signed for, as the SDK writes them, the URL as given
    first: with its port, and also without it if that is the scheme's default."""
    yield parsed.geturl()
    if port is None:
        yield add_port(parsed)
    elif DEFAULT_PORTS.get(parsed.scheme) in (None, port):
        yield remove_port(parsed)


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
