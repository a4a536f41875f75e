"""A local single-node Apache Kafka (KRaft) from the jars that Maven fetches.

For development, tests and `switchboard run` on machines without Docker:
`kafka/pom.xml` names the broker; `fetch_jars()` copies it and its dependencies
into `kafka/libs/` (ignored by git), and `LocalBroker` formats storage, starts
the broker on 127.0.0.1, waits a bounded time for it to answer, and stops it by PID.

`LocalBroker(..., secure=True)` listens on its port with SASL_SSL instead (PLAIN,
SCRAM-SHA-256 and SCRAM-SHA-512 for one user, a certificate from a CA of its own), on
`mtls_port` with TLS that requires a client certificate from that CA (mutual TLS), and
with plaintext on a third loopback port for its own inter-broker traffic;
`client_env()` gives the settings of a SASL_SSL client.

`LocalCluster` runs several of them as one KRaft cluster (each node a broker and a
controller voter, internal topics replicated on three nodes with two in sync), for
tests that kill a broker and for users who want to see Switchboard on a cluster
(`switchboard broker start --nodes 3`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from contract.errors import ServiceUnavailable
from switchboard.tls import Pem, issue, make_ca

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


def _new_cluster_id() -> str:
    # KRaft wants a base64 UUID; 22 url-safe chars from uuid4 bytes
    cluster_id = "-"
    while cluster_id.startswith("-"):  # StorageTool would read "-..." as an option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return cluster_id


@dataclass(frozen=True)
class Quorum:
    """What the nodes of one cluster share: its id and the controller voters."""

    cluster_id: str
    controllers: dict[int, int]  # node id -> its controller listener's port

    @property
    def voters(self) -> str:
        return ",".join(f"{node}@127.0.0.1:{port}" for node, port in self.controllers.items())

    @property
    def replicas(self) -> int:
        """Replication of the internal topics (consumer offsets, transactions)."""
        return min(3, len(self.controllers))


class LocalBroker:
    """One KRaft broker+controller on loopback, with its data under `data_dir`; alone,
    or node `node_id` of a `LocalCluster`'s `quorum`."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 9092,
        controller_port: int | None = None,
        heap: str = "768m",
        *,
        secure: bool = False,
        node_id: int = 1,
        quorum: Quorum | None = None,
        jvm_options: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.node_id = node_id
        self.quorum = quorum
        self.controller_port = (
            quorum.controllers[node_id] if quorum else controller_port or free_port()
        )
        self.heap = heap
        self.jvm_options = jvm_options
        self.secure = secure
        # the broker's own plaintext listener: inter-broker traffic, and our readiness check
        self.internal_port = free_port() if secure else port
        self.mtls_port = free_port() if secure else None
        self.tls_dir = self.data_dir / "tls"
        self.pid_file = self.data_dir / "broker.pid"
        self.log_file = self.data_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    USERNAME = "switchboard"

    @property
    def ca(self) -> Path:
        """The certificate authority that signed the secure listener's certificate."""
        return self.tls_dir / "ca.pem"

    def password(self) -> str:
        """The SASL user's password, made on the first secure start and kept beside the data
        (SCRAM credentials live in the formatted storage, so they must not change)."""
        path = self.data_dir / "sasl-password"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(18))
        return path.read_text().strip()

    def client_env(self, mechanism: str = "SCRAM-SHA-256") -> dict[str, str]:
        """The SWITCHBOARD_KAFKA_* variables of a client of this broker."""
        env = {"SWITCHBOARD_KAFKA_BOOTSTRAP": self.bootstrap}
        if self.secure:
            env |= {
                "SWITCHBOARD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "SWITCHBOARD_KAFKA_SASL_MECHANISM": mechanism,
                "SWITCHBOARD_KAFKA_USERNAME": self.USERNAME,
                "SWITCHBOARD_KAFKA_PASSWORD": self.password(),
                "SWITCHBOARD_KAFKA_CA_FILE": str(self.ca),
            }
        return env

    def issue_client_certificate(self, name: str) -> Pem:
        """A client certificate signed by this broker's CA, for mutual TLS."""
        ca = Pem(self.ca, self.tls_dir / "ca.key")
        return issue(ca, self.tls_dir, name, server=False)

    def _listeners(self) -> list[str]:
        controller = f"CONTROLLER://127.0.0.1:{self.controller_port}"
        if not self.secure:
            return [
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},{controller}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
            ]
        keystore = self._certificates()
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        plain = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_{self.USERNAME}="{self.password()}";'
        )
        secure = (
            f"SASL_SSL://127.0.0.1:{self.port},MTLS://127.0.0.1:{self.mtls_port},"
            f"INTERNAL://127.0.0.1:{self.internal_port}"
        )
        return [
            f"listeners={secure},{controller}",
            f"advertised.listeners={secure}",
            "listener.security.protocol.map="
            "SASL_SSL:SASL_SSL,MTLS:SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=INTERNAL",
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            f"listener.name.sasl_ssl.plain.sasl.jaas.config={plain}",
            f"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram}",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.ca}",
            "listener.name.mtls.ssl.client.auth=required",
        ]

    def _certificates(self) -> Path:
        """The CA and the listener's keystore (key, then certificate), made once."""
        keystore = self.tls_dir / "broker-keystore.pem"
        if not keystore.exists():
            ca = make_ca(self.tls_dir, "ca")
            broker = issue(ca, self.tls_dir, "broker", server=True)
            keystore.write_text(broker.key.read_text() + broker.cert.read_text())
        return keystore

    def _scram_users(self) -> list[str]:
        """StorageTool arguments that create the SCRAM user as the storage is formatted
        (KRaft keeps SCRAM credentials in its metadata log)."""
        if not self.secure:
            return []
        return [
            arg
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
            for arg in (
                "--add-scram",
                f"{mechanism}=[name={self.USERNAME},password={self.password()}]",
            )
        ]

    def _replication(self) -> list[str]:
        """Replication of the internal topics and of topics created by default: one copy
        alone; in a cluster, three with two in sync, as production clusters run."""
        if self.quorum is None:
            replicas, in_sync = 1, 1
        else:
            replicas = self.quorum.replicas
            in_sync = max(1, replicas - 1)
        return [
            f"offsets.topic.replication.factor={replicas}",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={in_sync}",
            f"share.coordinator.state.topic.replication.factor={replicas}",
            f"share.coordinator.state.topic.min.isr={in_sync}",
            f"default.replication.factor={replicas}",
            f"min.insync.replicas={in_sync}",
        ]

    def _failover(self) -> list[str]:
        """In a cluster: a dead node is fenced (its partitions' leadership moved, it left
        their in-sync replicas) after 3 s without a heartbeat instead of 9, so that a
        kill's write outage is short. Loopback has no network hiccups to ride out."""
        if self.quorum is None:
            return []
        return ["broker.session.timeout.ms=3000", "broker.heartbeat.interval.ms=500"]

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        voters = self.quorum.voters if self.quorum else f"1@127.0.0.1:{self.controller_port}"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={self.node_id}",
                    f"controller.quorum.voters={voters}",
                    *self._listeners(),
                    "controller.listener.names=CONTROLLER",
                    f"log.dirs={self.data_dir / 'logs'}",
                    "offsets.topic.num.partitions=8",
                    *self._replication(),
                    *self._failover(),
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
            *self.jvm_options,
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{LIBS}/*",
            *args,
        ]

    def start(self, timeout_s: float = 90.0) -> None:
        if self.launch():
            self.wait_ready(timeout_s)

    def launch(self) -> bool:
        """Format the storage (once) and start the JVM without waiting for it to answer:
        the nodes of a cluster must all be starting before any of them can. False if it
        was already running."""
        fetch_jars()
        if self.running():
            logger.info("Kafka already running on %s (pid %s)", self.bootstrap, self.pid())
            return False
        for port in {self.port, self.internal_port, self.mtls_port or self.port}:
            if _port_open(port):
                raise ServiceUnavailable(
                    f"port {port} is taken by another process; stop it or choose another port"
                )
        props = self._write_config()
        # formatted once: a restart skips the StorageTool's JVM, seconds of CPU
        if not (self.data_dir / "logs" / "meta.properties").exists():
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    self._cluster_id(),
                    "-c",
                    str(props),
                    "--ignore-formatted",
                    *self._scram_users(),
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
        return True

    def _cluster_id(self) -> str:
        if self.quorum is not None:
            return self.quorum.cluster_id
        marker = self.data_dir / "cluster.id"
        if not marker.exists():
            marker.write_text(_new_cluster_id())
        return marker.read_text().strip()

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        # the client would log every refused connection while the JVM starts; wait for the port
        while not _port_open(self.port) and time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.3)
        client = AdminClient({"bootstrap.servers": f"127.0.0.1:{self.internal_port}"})
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServiceUnavailable(
                    f"Kafka exited with {self.process.returncode}; see {self.log_file}"
                )
            try:
                md = client.list_topics(timeout=1.0)
                if self.node_id in md.brokers:
                    pid = self.process.pid if self.process is not None else self.pid()
                    logger.info("Kafka %s up on %s (pid %s)", kafka_version(), self.bootstrap, pid)
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


# Several JVMs share the machine's cores: the client compiler alone and one GC thread
# start each node in about half the CPU time, and a local cluster's load is light.
_LEAN_JVM = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


class LocalCluster:
    """`nodes` LocalBrokers as one KRaft cluster on loopback, each a broker and a
    controller voter, with data under `data_dir/node-N`. The layout (cluster id, ports)
    is kept in `data_dir/cluster.json`, so a later `LocalCluster(data_dir)` (the CLI's
    stop) finds the same nodes."""

    def __init__(
        self, data_dir: Path, nodes: int = 3, port: int | None = None, heap: str = "256m"
    ) -> None:
        self.data_dir = data_dir.resolve()
        layout = self.data_dir / "cluster.json"
        if layout.exists():
            saved = json.loads(layout.read_text())
            quorum = Quorum(saved["cluster_id"], {int(n): p for n, p in saved["controllers"]})
            ports = dict(saved["ports"])
        else:
            if nodes < 1:
                raise ValueError("a cluster needs at least one node")
            node_ids = range(1, nodes + 1)
            quorum = Quorum(_new_cluster_id(), {n: free_port() for n in node_ids})
            ports = {n: port + n - 1 if port else free_port() for n in node_ids}
            self.data_dir.mkdir(parents=True, exist_ok=True)
            layout.write_text(
                json.dumps(
                    {
                        "cluster_id": quorum.cluster_id,
                        "controllers": list(quorum.controllers.items()),
                        "ports": list(ports.items()),
                    }
                )
            )
        self.quorum = quorum
        self.nodes = [
            LocalBroker(
                self.data_dir / f"node-{n}",
                ports[n],
                heap=heap,
                node_id=n,
                quorum=quorum,
                jvm_options=_LEAN_JVM,
            )
            for n in quorum.controllers
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def start(self, timeout_s: float = 120.0) -> None:
        fetch_jars()
        with ThreadPoolExecutor(len(self.nodes)) as pool:  # each formats its storage first
            list(pool.map(LocalBroker.launch, self.nodes))
        deadline = time.monotonic() + timeout_s
        try:
            for node in self.nodes:
                node.wait_ready(max(1.0, deadline - time.monotonic()))
        except ServiceUnavailable:
            self.stop()
            raise
        logger.info("Kafka cluster of %d nodes up on %s", len(self.nodes), self.bootstrap)

    def running(self) -> bool:
        return all(node.running() for node in self.nodes)

    def stop(self, timeout_s: float = 30.0) -> None:
        # all at once: the last nodes of a quorum stopped one by one would wait for a
        # majority that has already gone
        for node in self.nodes:
            pid = node.pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        for node in self.nodes:
            node.stop(timeout_s)
