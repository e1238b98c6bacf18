"""A single-node Apache Kafka (combined broker and controller, KRaft) run from Maven's jars."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from devtools.localstack.server import ServerProcess
from tiendo.startup import brokers_in, metadata_request

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kafka"
POM = DEPLOY / "pom.xml"
LOG_CONFIG = DEPLOY / "log4j2.yaml"
DEFAULT_CACHE = REPO / ".local" / "kafka-libs"

# Marks a libs folder Maven filled completely; a folder without it is never used.
_COMPLETE = ".complete"
_BROKER_JAR_GLOB = "kafka_2.13-*.jar"


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    # Parallel test workers (xdist) may all want the jars at once: one fetches, the rest wait.
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_kafka_jars(cache_dir: Path = DEFAULT_CACHE, pom: Path = POM) -> Path:
    """Fetch the broker jars with Maven once per pom content; return the folder holding them."""
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    # One folder per pom version, filled aside and renamed into place: a broker still
    # running from the previous jars never sees its classpath change under it.
    libs = cache_dir / digest
    if (libs / _COMPLETE).exists():
        return libs
    with _locked(cache_dir / ".lock"):
        if (libs / _COMPLETE).exists():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("Maven (mvn) is needed to fetch the Kafka broker jars")
        # Holding the lock, any staging folder left is from a fetch that died half-way.
        for stale in cache_dir.glob(".staging-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = cache_dir / f".staging-{digest}-{os.getpid()}"
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not any(staging.glob(_BROKER_JAR_GLOB)):
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(
                f"fetching the Kafka jars with Maven failed ({result.returncode}):\n"
                f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
        (staging / _COMPLETE).write_text(f"{pom}\n")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    return libs


def java_executable() -> str:
    """JAVA_HOME's java, else the one on PATH (Java 17+)."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise RuntimeError(
            "Java 17+ is needed to run the Kafka broker (apt-get install default-jre)"
        )
    return java


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, as Kafka makes."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka's own generator avoids a leading dash: the tools' parser reads it as an option.
        if not cluster_id.startswith("-"):
            return cluster_id


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def alive_brokers(port: int, timeout: float = 2.0) -> int:
    """How many unfenced brokers a Metadata request to 127.0.0.1:`port` reports.

    The port accepts connections before the broker is unfenced, when creating a topic still
    fails for want of brokers; Metadata (v4, served by Kafka 3.x and 4.x) only lists
    unfenced ones. A raw request keeps this usable from sync code and inside an event loop.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(metadata_request())
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        return brokers_in(_recv_exact(sock, size))


def broker_properties(
    data_dir: Path, port: int, controller_port: int, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """server.properties for one combined broker+controller listening on 127.0.0.1 only."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # A static quorum: the voter set comes from this file at every start, so a data dir
        # survives a change of controller port (a --standalone dynamic quorum stores it).
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir / "data"),
        "auto.create.topics.enable": "true",
        "num.partitions": "1",
        # One node: every internal topic has one replica, and one in-sync replica is enough.
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # 50 partitions each (the defaults) make the first group join take seconds here.
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.num.partitions": "3",
        "share.coordinator.state.topic.num.partitions": "3",
        # After a SIGKILL the restarted controller keeps the dead broker's registration until
        # its session expires (9 s by default), and the new broker waits that long to join.
        "broker.session.timeout.ms": "4000",
        "broker.heartbeat.interval.ms": "1000",
        # Nobody else will join: rebalance at once instead of waiting 3 s for members.
        "group.initial.rebalance.delay.ms": "0",
        # Two cores shared with PostgreSQL, the services and the tests.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "background.threads": "4",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        "log.cleaner.backoff.ms": "1000",
        # Small segments: compaction and retention act within a test's lifetime.
        "log.segment.bytes": str(16 * 1024 * 1024),
        "log.retention.hours": "24",
        "log.retention.check.interval.ms": "60000",
    }
    settings.update(overrides or {})
    return settings


@dataclass
class KafkaBroker(ServerProcess):
    """One combined broker+controller; `data_dir` holds its properties, log file and storage."""

    name: ClassVar[str] = "Kafka broker"

    data_dir: Path
    port: int = 9092
    controller_port: int = 9093
    heap: str = "1g"
    overrides: Mapping[str, str] = field(default_factory=dict)
    cache_dir: Path = DEFAULT_CACHE
    process: subprocess.Popen[bytes] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "data"

    def write_properties(self) -> Path:
        """Write server.properties for this broker's ports and data dir."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        settings = broker_properties(self.data_dir, self.port, self.controller_port, self.overrides)
        self.properties_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        return self.properties_file

    def format_storage(self) -> bool:
        """Format the KRaft storage once; False when it already was (meta.properties exists)."""
        if (self.storage_dir / "meta.properties").exists():
            return False
        self.write_properties()
        result = subprocess.run(
            [
                *self._java(),
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                new_cluster_id(),
                "--config",
                str(self.properties_file),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed:\n{result.stdout}{result.stderr}")
        return True

    def prepare(self) -> None:
        """Everything before the first start: jars, properties, storage (each idempotent)."""
        ensure_kafka_jars(self.cache_dir)
        self.write_properties()
        self.format_storage()

    def _java(self) -> list[str]:
        libs = ensure_kafka_jars(self.cache_dir)
        # Without a configuration log4j2 prints errors only: the broker still runs, silently.
        logging = [f"-Dlog4j2.configurationFile={LOG_CONFIG}"] if LOG_CONFIG.exists() else []
        return [
            java_executable(),
            "-Xms256m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            *logging,
            "-cp",
            f"{libs}/*",
        ]

    def command(self) -> list[str]:
        """The java command line that runs the broker in the foreground."""
        return [*self._java(), "kafka.Kafka", str(self.properties_file)]

    def start(self, timeout: float = 120.0) -> subprocess.Popen[bytes]:
        """Start in the background (output appended to data_dir/broker.log); wait until ready.

        A stopped or killed broker starts again on the same data dir and ports.
        """
        if self.running:
            raise RuntimeError(f"Kafka broker on port {self.port} is already running")
        self.prepare()
        return self._launch(self.command(), self._serving, timeout)

    def _serving(self) -> bool:
        # the port opens before the broker is unfenced; a Metadata answer listing a broker
        # means it can host topics
        with contextlib.suppress(OSError, struct.error):
            return alive_brokers(self.port) > 0
        return False

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until the broker is unfenced and serving requests on its port."""
        self._wait(self._serving, timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """Controlled shutdown (SIGTERM); SIGKILL when it takes longer than `timeout`."""
        self._stop(signal.SIGTERM, timeout)

    def exec(self) -> None:
        """Replace this process with the broker, so a process runner's signals reach it."""
        self.prepare()
        cmd = self.command()
        os.execv(cmd[0], cmd)  # noqa: S606 - fixed arguments
