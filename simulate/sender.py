"""Posting generated callbacks to an edge: paced or open loop, with bounded concurrency.

The thin side of `switchboard simulate`: it renders each callback's form when it
sends it (so event times are current), signs it as the provider does, and counts
the answers. A retry of the provider is sent byte for byte as the first try was.

Requests go through `simulate.http_client`, a keep-alive client that costs little.
Transport errors and 503s are retried like the provider does (three tries).
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from contract.kinds import CallbackKind
from simulate.callbacks import Callback
from simulate.formats import Rendered, Scheme, SimFormat, body_sha256, render
from simulate.http_client import Connection, Target

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-SignalWire-Signature"
TRANSPORT_ERROR = 0  # the status counted for a callback no try could deliver

# (callback, epoch seconds when its request was written, final HTTP status)
Observer = Callable[[Callback, float, int], None]


def edge_targets(base_url: str) -> dict[CallbackKind, str]:
    """Where Switchboard's edge takes each kind: `{base}/callbacks/{kind}`."""
    base = base_url.rstrip("/")
    return {kind: f"{base}/callbacks/{kind.value}" for kind in CallbackKind}


class Signer:
    """The provider's signature of a callback with the signalwire SDK's own
    `RequestValidator`, over the public URL it called: a form post in the
    Twilio-compatible scheme, a JSON body in the SignalWire one (hex over the URL and
    the body), a Twilio JSON body (`bodySHA256` in the URL) in the Twilio scheme."""

    def __init__(self, key: str, public_url: str | None = None) -> None:
        from signalwire.request_validator import RequestValidator

        self._validator = RequestValidator(key)
        self._public = public_url.rstrip("/") if public_url else None

    def __call__(self, url: str, params: dict[str, str]) -> str:
        if self._public is not None:
            parts = urlsplit(url)
            url = self._public + parts.path + (f"?{parts.query}" if parts.query else "")
        return str(self._validator.build_signature_with_compatibility(url, params))

    def sign(self, url: str, rendered: Rendered) -> str:
        if rendered.scheme is Scheme.HEX:
            return str(
                self._validator.build_signature(self._public_of(url), rendered.body.decode())
            )
        return self(url, rendered.params)  # a bodySHA256 post signs its URL, no parameters

    def _public_of(self, url: str) -> str:
        if self._public is None:
            return url
        parts = urlsplit(url)
        return self._public + parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class SendReport:
    callbacks: int
    statuses: dict[int, int]  # final HTTP status -> callbacks; 0: no try got an answer
    statuses_by_kind: dict[str, dict[int, int]]
    retries: int
    started_at: float  # epoch seconds of the first request
    elapsed_s: float
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p90, p99, max

    @property
    def per_s(self) -> float:
        return self.callbacks / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def acknowledged(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def all_acknowledged(self) -> bool:
        return self.acknowledged == self.callbacks


def _render(
    cb: Callback, target: Target, signer: Signer | None, now: float, fmt: SimFormat
) -> tuple[bytes, Target]:
    rendered = render(cb, now, fmt)
    body = rendered.body
    tags = [f"campaign={quote(cb.campaign, safe='')}"] if cb.campaign else []
    if rendered.scheme is Scheme.BODY_SHA256:
        tags.append(f"bodySHA256={body_sha256(body)}")
    query = f"?{'&'.join(tags)}" if tags else ""
    head = (
        f"POST {target.path}{query} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"Content-Type: {rendered.content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if signer is not None:
        head += f"{SIGNATURE_HEADER}: {signer.sign(target.url + query, rendered)}\r\n"
    return (head + "\r\n").encode() + body, target


async def post_all(
    callbacks: Sequence[Callback],
    targets: Mapping[CallbackKind, str],
    *,
    rate: float | None = None,
    concurrency: int = 64,
    signer: Signer | None = None,
    progress: bool = False,
    observe: Observer | None = None,
    timeout_s: float = 10.0,
    attempts: int = 3,
    max_retry_wait_s: float = 1.0,
    fmt: SimFormat = SimFormat.COMPAT,
) -> SendReport:
    """POST every callback in order; `rate` per second, or None for as fast as
    `concurrency` requests in flight allow."""
    parsed = {kind: Target.parse(url) for kind, url in targets.items()}
    missing = {cb.kind for cb in callbacks} - set(parsed)
    if missing:
        raise ValueError(f"no target URL for {', '.join(sorted(k.value for k in missing))}")
    # a provider retry repeats the first try's bytes (and signature) exactly
    retried = {cb.key for cb in callbacks if cb.duplicate}
    first_tries: dict[tuple[str, int], tuple[bytes, Target]] = {}
    statuses: Counter[int] = Counter()
    by_kind: dict[CallbackKind, Counter[int]] = {kind: Counter() for kind in parsed}
    latencies = array("d")
    retries = 0
    next_index = 0
    done = 0
    total = len(callbacks)
    loop = asyncio.get_running_loop()
    start = loop.time()
    started_at = time.time()

    async def worker() -> None:
        nonlocal next_index, done, retries
        connections: dict[tuple[str, int], Connection] = {}
        try:
            while next_index < total:
                index = next_index
                next_index += 1
                if rate:
                    delay = start + index / rate - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                cb = callbacks[index]
                now = time.time()
                request = first_tries.pop(cb.key, None) if cb.duplicate else None
                if request is None:
                    request = _render(cb, parsed[cb.kind], signer, now, fmt)
                    if cb.key in retried and not cb.duplicate:
                        first_tries[cb.key] = request
                data, target = request
                conn = connections.get((target.host, target.port))
                if conn is None:
                    conn = connections[(target.host, target.port)] = Connection(
                        target.host, target.port
                    )
                status = TRANSPORT_ERROR
                for attempt in range(attempts):
                    if attempt:
                        retries += 1
                    try:
                        async with asyncio.timeout(timeout_s):
                            status, retry_after = await conn.request(data)
                        if status == 503 and attempt + 1 < attempts:
                            await asyncio.sleep(min(retry_after, max_retry_wait_s))
                            continue
                        break
                    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                        logger.debug("%s sid=%s: %r; reconnecting", target.url, cb.sid, exc)
                        conn.close()
                        status = TRANSPORT_ERROR
                latencies.append(time.time() - now)
                statuses[status] += 1
                by_kind[cb.kind][status] += 1
                done += 1
                if observe is not None:
                    observe(cb, now, status)
        finally:
            for conn in connections.values():
                conn.close()

    async def ticker(bar: Progress, task: TaskID) -> None:
        while True:
            per_s = done / max(loop.time() - start, 1e-9)
            bar.update(task, completed=done, description=_describe(statuses, per_s))
            await asyncio.sleep(0.25)

    bar = _progress() if progress else None
    tick = None
    if bar is not None:
        bar.start()
        tick = asyncio.create_task(ticker(bar, bar.add_task("sending", total=total)))
    try:
        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, total or 1)))))
    finally:
        if tick is not None:
            tick.cancel()
        if bar is not None:
            per_s = done / max(loop.time() - start, 1e-9)
            bar.update(bar.task_ids[0], completed=done, description=_describe(statuses, per_s))
            bar.stop()
    elapsed = loop.time() - start
    return SendReport(
        callbacks=total,
        statuses=dict(sorted(statuses.items())),
        statuses_by_kind={k.value: dict(sorted(c.items())) for k, c in by_kind.items() if c},
        retries=retries,
        started_at=started_at,
        elapsed_s=elapsed,
        latency_ms=_percentiles(latencies),
    )


def send(
    callbacks: Sequence[Callback], targets: Mapping[CallbackKind, str], **options: object
) -> SendReport:
    """`post_all` in its own event loop (uvloop when installed, as the edge uses)."""
    runner: Callable[..., SendReport] = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass
    return runner(post_all(callbacks, targets, **options))  # type: ignore[arg-type]


def _percentiles(values: array[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    last = len(ordered) - 1

    def at(q: float) -> float:
        return round(ordered[min(last, int(q * len(ordered)))] * 1000, 3)

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": at(1.0)}


def _describe(statuses: Counter[int], per_s: float) -> str:
    shown = ", ".join(f"{s or 'error'}: {n}" for s, n in sorted(statuses.items()))
    return f"{per_s:,.0f}/s  {shown}"


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
