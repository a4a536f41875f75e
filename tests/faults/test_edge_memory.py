"""A flood of hostile input leaves the edge's memory flat and lands nothing on a topic."""

from __future__ import annotations

import random
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from contract.settings import Settings
from tests.harness import Stage, post_form, records_on_topics, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

HOSTILE: list[tuple[str, str, bytes]] = [
    ("sms", "application/x-www-form-urlencoded", b"%zz%%&&=="),  # undecodable
    ("sms", "application/x-www-form-urlencoded", b"MessageStatus=sent"),  # no SID
    ("voice", "application/json", b'{"CallSid": {"nested": 1}}'),  # not a scalar
    ("voice", "application/json", b"[1, 2, 3]"),  # not an object
    ("sms", "text/plain", b"MessageSid=SM1"),  # unsupported type
    ("nope", "application/x-www-form-urlencoded", b"MessageSid=SM1"),  # unknown kind
    ("sms", "application/x-www-form-urlencoded", b"Body=" + b"x" * 70_000),  # too large
    (
        "recording",
        "application/x-www-form-urlencoded",
        "RecordingSid=\ud800".encode("utf-8", "surrogatepass"),
    ),  # invalid UTF-8
]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _flood(base: str, count: int, rng: random.Random) -> dict[int, int]:
    codes: dict[int, int] = {}
    for _ in range(count):
        kind, ctype, body = rng.choice(HOSTILE)
        request = urllib.request.Request(
            f"{base}/callbacks/{kind}?campaign=%27%3B%20DROP%20TABLE%20x%3B--",
            data=body,
            headers={"Content-Type": ctype},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                code = response.status
        except urllib.error.HTTPError as exc:
            code = exc.code
        codes[code] = codes.get(code, 0) + 1
    return codes


def test_hostile_flood_keeps_memory_flat(topics: Settings, tmp_path: Path) -> None:
    edge = Stage("ingest", topics, tmp_path).start()
    base = f"http://127.0.0.1:{topics.ingest_port}"
    try:
        wait_for(lambda: post_form(f"{base}/callbacks/sms", {}) == 400, timeout=60, what="the edge")
        assert edge.proc is not None
        rng = random.Random(7)
        _flood(base, 1_000, rng)  # warm-up: allocator pools, metric label sets
        before = _rss_kb(edge.proc.pid)
        codes = _flood(base, 6_000, rng)
        after = _rss_kb(edge.proc.pid)
        assert edge.alive()
    finally:
        assert edge.terminate() == 0
    assert set(codes) <= {400, 404, 413, 415}, codes
    assert after <= before * 1.05 + 2048, f"RSS grew from {before} kB to {after} kB"
    assert sum(records_on_topics(topics).values()) == 0
