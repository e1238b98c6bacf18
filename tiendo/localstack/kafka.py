"""A single-node Apache Kafka broker in KRaft mode, run from the jars Maven fetches."""

import base64
import hashlib
import os
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tiendo.localstack.net import wait_for_port

REPO = Path(__file__).resolve().parents[2]
POM = REPO / "deploy" / "kafka" / "pom.xml"
LOG_CONFIG = REPO / "deploy" / "kafka" / "log4j2.yaml"
DEFAULT_LIBS = REPO / ".local" / "kafka-libs"


def ensure_kafka_jars(libs: Path = DEFAULT_LIBS) -> Path:
    """Fetch the broker jars with Maven once; a changed pom fetches them again."""
    stamp = libs / ".pom-sha256"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is needed to fetch the Kafka broker jars")
    if libs.exists():
        shutil.rmtree(libs)
    subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        check=True,
    )
    stamp.write_text(digest)
    return libs


@dataclass
class KafkaBroker:
    """A combined broker+controller; `data_dir` holds its config, logs and storage."""

    data_dir: Path
    port: int = 9092
    controller_port: int = 9093
    heap: str = "768m"
    libs: Path = DEFAULT_LIBS
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def properties(self) -> Path:
        return self.data_dir / "server.properties"

    def configure(self) -> None:
        """Write server.properties and format the storage on first use (idempotent)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_dir = self.data_dir / "data"
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(log_dir),
            "num.partitions": "3",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            # one node: nothing to wait for before the first consumer group rebalance
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.backoff.ms": "1000",
        }
        self.properties.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        if (log_dir / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(
            [
                *self._java(),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(self.properties),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def _java(self) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("Java 17+ is needed to run the Kafka broker")
        return [
            java,
            "-Xms256m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={LOG_CONFIG}",
            "-cp",
            f"{self.libs}/*",
        ]

    def command(self) -> list[str]:
        """The java command line that runs the broker in the foreground."""
        return [*self._java(), "kafka.Kafka", str(self.properties)]

    def start(self, timeout: float = 60.0) -> None:
        """Start in the background (tests); output goes to data_dir/broker.log."""
        ensure_kafka_jars(self.libs)
        self.configure()
        with (self.data_dir / "broker.log").open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_for_port(self.port, timeout)
        except TimeoutError:
            self.kill()
            raise

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL if it takes longer than `timeout`."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as in a crash."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait()
        self.process = None

    def exec(self) -> None:
        """Replace this process with the broker, so a process runner's signals reach it."""
        ensure_kafka_jars(self.libs)
        self.configure()
        cmd = self.command()
        os.execv(cmd[0], cmd)  # noqa: S606 - fixed arguments
