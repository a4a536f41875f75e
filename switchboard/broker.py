"""A local single-node Apache Kafka (KRaft) from the jars that Maven fetches.

For development, tests and `switchboard run` on machines without Docker:
`kafka/pom.xml` names the broker; `fetch_jars()` copies it and its dependencies
into `kafka/libs/` (ignored by git), and `LocalBroker` formats storage, starts
the broker on 127.0.0.1, waits a bounded time for it to answer, and stops it by PID.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from contract.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

KAFKA_HOME = Path(
    os.environ.get("SWITCHBOARD_KAFKA_HOME", Path(__file__).resolve().parents[1] / "kafka")
)
LIBS = KAFKA_HOME / "libs"

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def kafka_version() -> str:
    jars = sorted(LIBS.glob("kafka_2.13-*.jar"))
    if not jars:
        return "not fetched"
    return jars[0].stem.removeprefix("kafka_2.13-")


def fetch_jars() -> Path:
    """Fetch the broker's jars with Maven, once; later calls are no-ops."""
    if any(LIBS.glob("kafka_2.13-*.jar")):
        return LIBS
    if shutil.which("mvn") is None:
        raise ServiceUnavailable(
            "Maven (mvn) is needed to fetch Kafka's jars: apt-get install maven"
        )
    logger.info("fetching Kafka's jars with Maven into %s", LIBS)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(KAFKA_HOME / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={LIBS}",
        ],
        check=True,
    )
    return LIBS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class LocalBroker:
    """One KRaft broker+controller on loopback, with its data under `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 9092,
        controller_port: int | None = None,
        heap: str = "768m",
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.controller_port = controller_port or free_port()
        self.heap = heap
        self.pid_file = self.data_dir / "broker.pid"
        self.log_file = self.data_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.data_dir / 'logs'}",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    # first consumer join is immediate instead of waiting 3 s for more members
                    "group.initial.rebalance.delay.ms=0",
                    "num.partitions=4",
                    "auto.create.topics.enable=true",
                    "log.retention.hours=168",
                ]
            )
            + "\n"
        )
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_file))
        return props

    def _java(self, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{LIBS}/*",
            *args,
        ]

    def start(self, timeout_s: float = 90.0) -> None:
        fetch_jars()
        if self.running():
            logger.info("Kafka already running on %s (pid %s)", self.bootstrap, self.pid())
            return
        if _port_open(self.port):
            raise ServiceUnavailable(
                f"port {self.port} is taken by another process; stop it or choose another port"
            )
        props = self._write_config()
        cluster_id = self._cluster_id()
        subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(props),
                "--ignore-formatted",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with open(self.data_dir / "broker.stdout", "ab") as out:  # the child keeps its own fd
            self.process = subprocess.Popen(
                self._java("kafka.Kafka", str(props)),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            )
        self.pid_file.write_text(str(self.process.pid))
        self._wait_ready(timeout_s)
        logger.info("Kafka %s up on %s (pid %d)", kafka_version(), self.bootstrap, self.process.pid)

    def _cluster_id(self) -> str:
        marker = self.data_dir / "cluster.id"
        if not marker.exists():
            # KRaft wants a base64 UUID; 22 url-safe chars from uuid4 bytes

            cluster_id = "-"
            while cluster_id.startswith("-"):  # StorageTool would read "-..." as an option
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            marker.write_text(cluster_id)
        return marker.read_text().strip()

    def _wait_ready(self, timeout_s: float) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        # the client would log every refused connection while the JVM starts; wait for the port
        while not _port_open(self.port) and time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.3)
        client = AdminClient({"bootstrap.servers": self.bootstrap})
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServiceUnavailable(
                    f"Kafka exited with {self.process.returncode}; see {self.log_file}"
                )
            try:
                md = client.list_topics(timeout=1.0)
                if md.brokers:
                    return
            except KafkaException:
                pass
            time.sleep(0.3)
        self.stop()
        raise ServiceUnavailable(
            f"Kafka did not answer on {self.bootstrap} within {timeout_s:.0f} s; "
            f"see {self.log_file}"
        )

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL, for fault-injection tests: the broker gets no chance to flush."""
        self._signal(signal.SIGKILL, timeout_s=10)

    def stop(self, timeout_s: float = 30.0) -> None:
        self._signal(signal.SIGTERM, timeout_s=timeout_s)

    def _signal(self, sig: signal.Signals, timeout_s: float) -> None:
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            self.pid_file.unlink(missing_ok=True)
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None:
                if self.process.poll() is not None:
                    break
            else:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
            time.sleep(0.1)
        else:
            logger.warning("Kafka (pid %d) did not stop in %.0f s; killing it", pid, timeout_s)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if self.process is not None:
                self.process.wait(5)
        self.pid_file.unlink(missing_ok=True)
        self.process = None
