"""`switchboard run` (what `make run` starts): its banner's curl line lands a row that
`switchboard report` shows, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from switchboard.broker import free_port
from tests.harness import ROOT, wait_for

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        p, pp = (int(x) for x in line.split())
        children.setdefault(pp, []).append(p)
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = (
        Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() else ""
    )
    return state != "Z"


def test_run_brings_up_the_pipeline_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {k: free_port() for k in ("KAFKA", "INGEST", "API", "WEB")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env |= {
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
        "SWITCHBOARD_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports['KAFKA']}",
        "SWITCHBOARD_INGEST_PORT": str(ports["INGEST"]),
        "SWITCHBOARD_API_PORT": str(ports["API"]),
        "SWITCHBOARD_PROCESS_WEB_PORT": str(ports["WEB"]),
        "SWITCHBOARD_SINK_BATCH_SECONDS": "0.2",
    }
    with open(tmp_path / "run.log", "wb") as log:  # the child keeps its own fd
        run = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "run"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        edge = f"http://127.0.0.1:{ports['INGEST']}"
        wait_for(
            lambda: "--data-urlencode 'Body=hello'" in (tmp_path / "run.log").read_text(),
            timeout=120,
            what="the banner",
        )

        def post() -> int:
            body = urllib.parse.urlencode(
                {
                    "MessageSid": "SM0001",
                    "MessageStatus": "delivered",
                    "AccountSid": "AC1",
                    "From": "+15550001111",
                    "To": "+15550002222",
                    "Body": "hello",
                    "NumMedia": "0",
                    "NumSegments": "1",
                }
            ).encode()
            req = urllib.request.Request(f"{edge}/callbacks/sms?campaign=demo", data=body)
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status
            except OSError:
                return 0

        assert wait_for(lambda: post() == 204, timeout=60, what="a 204 from the edge")

        def report() -> list[dict[str, object]]:
            out = subprocess.run(
                [sys.executable, "-m", "switchboard", "report", "delivery", "--format", "json"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            rows: list[dict[str, object]] = json.loads(out.stdout) if out.returncode == 0 else []
            return rows

        rows = wait_for(report, timeout=90, what="the message in the delivery report")
        assert rows == [
            {
                "campaign": "demo",
                "messages": 1,
                "delivered": 1,
                "undelivered": 0,
                "failed": 0,
                "unconfirmed": 0,
                "pending": 0,
                "delivery_rate": 1.0,
                "not_counted": 0,
                "other": 0,
            }
        ]
        family = _descendants(run.pid)
        assert len(family) >= 4  # the broker and the three stages at least
    finally:
        run.send_signal(signal.SIGINT)
        code = run.wait(90)
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]
    left = [pid for pid in family if _alive(pid)]
    assert left == [], f"processes left running: {left}"
