"""The API token: from SWITCHBOARD_API_TOKEN, or generated at start and kept in the
data dir (mode 0600) so the CLI on the same machine can find it."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from contract.settings import Settings


def token_file(settings: Settings) -> Path:
    return settings.data_dir / "api-token"


def resolve_token(settings: Settings) -> tuple[str, bool]:
    """The token to require, and whether it was generated now."""
    if settings.api_token is not None:
        return settings.api_token.get_secret_value(), False
    path = token_file(settings)
    if path.exists():
        return path.read_text().strip(), False
    token = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return token, True


def read_token(settings: Settings) -> str | None:
    if settings.api_token is not None:
        return settings.api_token.get_secret_value()
    path = token_file(settings)
    return path.read_text().strip() if path.exists() else None


def token_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
