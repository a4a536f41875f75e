"""`switchboard run`: the broker and the three stages as child processes, stopped in order.

Children run in their own sessions, so Ctrl-C reaches only this supervisor, which
then stops the edge first (no new callbacks), then the processors, then the sinks,
then the broker, each with SIGTERM and a bounded wait.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

from rich.console import Console
from rich.panel import Panel

from contract.errors import ConfigurationError
from contract.kafka import ensure_topics
from contract.settings import KafkaSecurityProtocol, Settings
from query.auth import resolve_token
from simulate.sender import Signer
from switchboard.broker import LocalBroker, kafka_version

logger = logging.getLogger(__name__)
console = Console(stderr=True)

STAGES = ("sink", "process", "reconcile", "ingest")  # started in this order, stopped in reverse
_COMMANDS = {"reconcile": ["reconcile", "--follow"]}  # the others: `switchboard <name>`


def _stage(name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = _COMMANDS.get(name, [name])
    return subprocess.Popen(
        [sys.executable, "-m", "switchboard", *command], env=env, start_new_session=True
    )


def _stages(settings: Settings) -> tuple[str, ...]:
    """The stages to run: reconcile only with REST credentials to reconcile with."""
    if settings.signalwire_configured:
        return STAGES
    logger.warning("SignalWire credentials not set: stuck messages and calls are not reconciled")
    return tuple(name for name in STAGES if name != "reconcile")


def _stop(name: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        logger.warning("%s did not stop within %.0f s; killing it", name, timeout_s)
        proc.kill()
        proc.wait(5)


def run_pipeline(settings: Settings, *, start_broker: bool = True) -> None:
    broker: LocalBroker | None = None
    protocol = settings.kafka_security_protocol
    if start_broker and protocol is not KafkaSecurityProtocol.PLAINTEXT:
        raise ConfigurationError(
            f"SWITCHBOARD_KAFKA_SECURITY_PROTOCOL={protocol.value}, but `switchboard run` starts "
            "a plaintext broker: add --external-kafka (a local secured one: "
            "`switchboard broker start --secure`)"
        )
    if start_broker:
        port = int(settings.kafka_bootstrap.rsplit(":", 1)[1])
        broker = LocalBroker(settings.data_dir / "kafka", port=port)
        broker.start()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        ensure_topics(settings)
        token, _ = resolve_token(settings)
        env = dict(os.environ)
        stages = _stages(settings)
        for name in stages:
            procs[name] = _stage(name, env)
        _banner(settings, token)
        restarts: dict[str, list[float]] = {name: [] for name in stages}
        while not stopping.is_set():
            for name, proc in procs.items():
                if proc.poll() is None:
                    continue
                # A stage that dies is restarted, as a service manager would; one that keeps
                # dying is a configuration problem, and the pipeline stops with its status.
                recent = [t for t in restarts[name] if time.monotonic() - t < 60]
                if len(recent) >= 3:
                    logger.error(
                        "%s exited %d times in a minute (last status %s); stopping",
                        name,
                        len(recent) + 1,
                        proc.returncode,
                    )
                    stopping.set()
                    break
                logger.warning("%s exited with %s; restarting it", name, proc.returncode)
                restarts[name] = [*recent, time.monotonic()]
                procs[name] = _stage(name, env)
            stopping.wait(0.3)
    finally:
        console.print("[yellow]stopping: edge, reconcile, processors, sinks, broker[/yellow]")
        for name in reversed(STAGES):
            if name in procs:
                _stop(name, procs[name])
        if broker is not None:
            broker.stop()
        console.print("[green]stopped[/green]")


# The banner's example: a delivered SMS, as the provider would post it.
EXAMPLE_PARAMS = {
    "MessageSid": "SM0001",
    "MessageStatus": "delivered",
    "AccountSid": "AC1",
    "From": "+15550001111",
    "To": "+15550002222",
    "Body": "hello",
}


def example_curl(settings: Settings) -> str:
    """A `curl` command to try the edge with, one shell command in lines of at most 80
    columns (continued with a backslash), so that it pastes whole from any terminal.
    Every value is URL-encoded (a `+` sent raw arrives as a space), and with a signing
    key set the command carries the signature the edge will check."""
    url = f"http://{settings.ingest_host}:{settings.ingest_port}/callbacks/sms?campaign=demo"
    lines = [f"curl -i '{url}'"]
    if settings.signing_key is not None:
        signer = Signer(settings.signing_key.get_secret_value(), settings.public_url)
        lines.append(f"-H 'X-SignalWire-Signature: {signer(url, EXAMPLE_PARAMS)}'")
    lines += [f"--data-urlencode '{name}={value}'" for name, value in EXAMPLE_PARAMS.items()]
    return " \\\n  ".join(lines)


def _banner(settings: Settings, token: str) -> None:
    edge = f"http://{settings.ingest_host}:{settings.ingest_port}"
    console.print(
        Panel.fit(
            f"[bold]Switchboard is running[/bold] (Kafka {kafka_version()} on "
            f"{settings.kafka_bootstrap}, ClickHouse {settings.clickhouse_dsn})\n\n"
            f"edge:      {edge}/callbacks/{{sms,voice,recording,transcription,inbound-call}}\n"
            f"query API: http://{settings.api_host}:{settings.api_port}  token: {token}\n"
            f"dashboard: http://{settings.api_host}:{settings.api_port}/dashboard?token={token}\n\n"
            "then: switchboard report delivery; switchboard tail\n"
            "Ctrl-C stops everything.",
            title="switchboard run",
        )
    )
    # outside the panel and unstyled, so that the terminal copies it whole
    signed = " (signed with SWITCHBOARD_SIGNING_KEY)" if settings.signing_key is not None else ""
    print(f"Try it{signed}:", file=sys.stderr)
    print(example_curl(settings), file=sys.stderr, flush=True)
