"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for the load sender.

On a 2-core machine that also runs the whole pipeline, the load generator must cost
little: a general-purpose client costs several times more per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote_plus, urlsplit


@dataclass(frozen=True, slots=True)
class Target:
    """An http:// URL, split as a request on a connection needs it."""

    url: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// targets are supported, not {url!r}")
        return cls(url, parts.hostname, parts.port or 80, parts.path or "/")


class Connection:
    """One keep-alive HTTP/1.1 connection; reopened after `Connection: close` or an error."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, data: bytes) -> tuple[int, float]:
        """Send one request, return (status, Retry-After seconds or 0)."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        writer.write(data)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        close = b"\r\nconnection: close" in lower or head.startswith(b"HTTP/1.0")
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            length = int(lower[at + 17 : lower.index(b"\r\n", at + 2)])
            if length:
                await reader.readexactly(length)
        elif b"\r\ntransfer-encoding: chunked" in lower:
            await _skip_chunked(reader)
        elif status not in (204, 304) and not 100 <= status < 200:
            await reader.read()  # body until the server closes
            close = True
        retry_after = 0.0
        if status == 503:
            at = lower.find(b"\r\nretry-after:")
            if at >= 0:
                with contextlib.suppress(ValueError):
                    retry_after = float(lower[at + 14 : lower.index(b"\r\n", at + 2)])
        if close:
            self.close()
        return status, retry_after

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _skip_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return


_SAFE = re.compile(r"[A-Za-z0-9_.~-]*\Z").match


@lru_cache(maxsize=8192)
def _quote(value: str) -> str:
    return quote_plus(value)


def form_body(params: dict[str, str]) -> bytes:
    """`urlencode(params)`, at a fraction of its cost: SIDs need no quoting, and the
    values that do (numbers, bodies, statuses) repeat, so their quoting is cached."""
    return "&".join(f"{k}={v if _SAFE(v) else _quote(v)}" for k, v in params.items()).encode()
