"""`switchboard tail`: status changes as they arrive, coloured, with the failed table."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from rich.console import Console

from contract.events import Event
from contract.kafka import client_config
from contract.settings import Settings
from contract.topics import Topic, topic_name
from switchboard.tail import TailView
from tests import scenario
from tests.harness import ROOT, settings_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def render(view: TailView, *lines: object) -> str:
    console = Console(width=160, record=True, file=io.StringIO())
    for line in lines:
        console.print(line)
    console.print(view.failed_table())
    return console.export_text()


def test_view_shows_changes_only_and_keeps_the_failed_table() -> None:
    view = TailView()
    now = time.time()
    seen = [
        view.accept(scenario.sms("SM1", "queued", now, "spring-sale")),
        view.accept(scenario.sms("SM1", "sent", now, "spring-sale")),
        view.accept(scenario.sms("SM1", "sent", now, "spring-sale")),  # a provider retry
        view.accept(scenario.sms("SM1", "undelivered", now, "spring-sale", code="30003")),
        view.accept(scenario.sms("SM1", "sent", now, "spring-sale")),  # late, out of order
        view.accept(scenario.call("CA1", "failed", now, seq=0, code="13224")),
    ]
    assert [line is not None for line in seen] == [True, True, False, True, False, True]
    text = render(view, *[line for line in seen if line is not None])
    assert "SID: SM1  Status: undelivered  ErrorCode: 30003 (unreachable handset)" in text
    assert "campaign: spring-sale" in text
    assert "Failed and undelivered: 2" in text
    assert re.search(r"voice\s+│ CA1\s+│ failed\s+│ 13224\s+│ invalid dial number", text), text
    assert view.changes == 4


@pytest.fixture
def producer(topics: Settings) -> Iterator[Producer]:
    producer = Producer(client_config(topics))
    yield producer
    producer.flush(10)


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """`switchboard tail` in a pseudo-terminal, its screen output kept as it arrives."""

    def __init__(self, settings: Settings) -> None:
        master, slave = pty.openpty()
        env = settings_env(settings) | {"TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50"}
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "tail"],
            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, start_new_session=True,
            # As a terminal's foreground command: Ctrl-C interrupts it, even when the tests
            # run in the background (where the shell has the children ignore SIGINT).
            preexec_fn=_interruptible,
        )  # fmt: skip
        os.close(slave)
        self.master = master
        self.raw = b""

    def read(self, timeout: float = 0.2) -> None:
        while select.select([self.master], [], [], timeout)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the child closed the terminal
                return
            if not chunk:
                return
            self.raw += chunk
            timeout = 0.05

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode("utf-8", errors="replace")).replace("\r", "")

    def wait_for(self, needle: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read()
            if needle in self.text:
                return self.text
            if self.proc.poll() is not None:
                break
        raise AssertionError(f"{needle!r} not on the screen after {timeout} s:\n{self.text}")

    def stop(self) -> int | None:
        """Ctrl-C, then the exit code; None if it did not exit in time (the caller asserts
        it, after whatever failed first, which a raise here would hide)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Ctrl-C
        code: int | None = None
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            self.read()
            os.close(self.master)
        return code


def test_tail_streams_status_changes_as_they_arrive(topics: Settings, producer: Producer) -> None:
    events = topic_name(Topic.EVENTS, topics.topic_prefix)

    def send(event: Event) -> None:
        producer.produce(events, key=event.sid.encode(), value=event.to_bytes())
        producer.flush(10)

    # something already on the topic: tail starts at the end, so it is never shown
    send(scenario.sms("SM000", "delivered", time.time(), "old-campaign"))
    terminal = Terminal(topics)
    try:
        terminal.wait_for("tailing " + events, timeout=60)
        send(scenario.sms("SM900", "sent", time.time(), "spring-sale"))
        terminal.wait_for("SID: SM900  Status: sent")
        send(scenario.sms("SM900", "delivered", time.time(), "spring-sale"))
        terminal.wait_for("SID: SM900  Status: delivered")
        assert "Failed and undelivered: 0" in terminal.text

        send(scenario.sms("SM901", "undelivered", time.time(), "spring-sale", code="30007"))
        send(scenario.sms("SM901", "sent", time.time(), "spring-sale"))  # late: not a change
        send(scenario.call("CA900", "completed", time.time(), seq=3, duration=42, mos=4.2))
        terminal.wait_for("SID: CA900  Status: completed    duration: 42 s  MOS: 4.20")
        screen = terminal.wait_for("Failed and undelivered: 1")
        assert "SID: SM901  Status: undelivered  ErrorCode: 30007 (carrier filtered)" in screen
        assert re.search(r"│ sms\s+│ SM901\s+│ undelivered\s+│ 30007\s+│ carrier filtered", screen)
        assert "SM000" not in screen
        assert "SID: SM901  Status: sent" not in screen
        # coloured like the seed's log: failures in red, deliveries in green
        raw = terminal.raw.decode("utf-8", errors="replace")
        assert re.search(r"\x1b\[1;31mundelivered", raw), raw[-2000:]
        assert re.search(r"\x1b\[32mdelivered", raw), raw[-2000:]
    finally:
        code = terminal.stop()
    assert code == 0, terminal.text[-2000:]
    assert "4 status changes, 1 failed or undelivered" in terminal.text
