"""Settings and running services against the test session's Kafka and PostgreSQL."""

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import httpx
from fastapi import FastAPI

if TYPE_CHECKING:
    from services.aggregator.settings import AggregatorSettings

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]


class TopicKwargs(TypedDict):
    """The topic fields of a service's settings, typed so `**topics.kwargs()` type-checks."""

    topic_events: str
    topic_progress: str
    topic_dead_letters: str


class ServiceKwargs(TopicKwargs):
    """What every service's settings take to reach this test's database and broker."""

    database_url: str
    kafka_bootstrap: str


@dataclass(frozen=True)
class Topics:
    events: str
    progress: str
    dead_letters: str

    @classmethod
    def unique(cls) -> "Topics":
        suffix = uuid.uuid4().hex[:10]
        return cls(f"events-{suffix}", f"progress-{suffix}", f"dlq-{suffix}")

    def env(self, prefix: str) -> dict[str, str]:
        return {
            f"{prefix}TOPIC_EVENTS": self.events,
            f"{prefix}TOPIC_PROGRESS": self.progress,
            f"{prefix}TOPIC_DEAD_LETTERS": self.dead_letters,
        }

    def kwargs(self) -> TopicKwargs:
        return {
            "topic_events": self.events,
            "topic_progress": self.progress,
            "topic_dead_letters": self.dead_letters,
        }


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan entered, and a client that calls it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def eventually(
    check: Callable[[], Awaitable[T]], *, timeout: float = 60.0, every: float = 0.2
) -> T:
    """Poll `check` until it returns without AssertionError; re-raise the last one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(every)


class ServiceProcess:
    """A service run as `tiendo <service> serve` in a child process (for kill -9 tests)."""

    def __init__(self, service: str, env: dict[str, str], log: Path) -> None:
        self.service = service
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIENDO_")}
        env.update(self.env)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", self.service, "serve"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>, the port from the service's settings."""
        [port] = [v for k, v in self.env.items() if k.endswith("_PORT")]
        return f"http://127.0.0.1:{port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.service} is not running"
        return self.process.pid

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def service_env(prefix: str, **values: Any) -> dict[str, str]:
    return {f"{prefix}{k.upper()}": str(v) for k, v in values.items()}


async def until_ready(client: httpx.AsyncClient, timeout: float = 60.0) -> None:
    """Wait for a service's /readyz to answer 200."""

    async def ready() -> None:
        assert (await client.get("/readyz")).status_code == 200

    await eventually(ready, timeout=timeout)


def aggregator_process(
    database: str, bootstrap: str, topics: Topics, log: Path, **settings: Any
) -> ServiceProcess:
    """The aggregator as a child process on a free port, for kill -9 tests."""
    from devtools.localstack import free_port

    values = {
        "database_url": database,
        "kafka_bootstrap": bootstrap,
        "group_id": f"agg-{topics.events}",
        "port": free_port(),
        **settings,
    }
    env = {**service_env("TIENDO_AGGREGATOR_", **values), **topics.env("TIENDO_AGGREGATOR_")}
    return ServiceProcess("aggregator", env, log)


def aggregator_settings(
    database: str, bootstrap: str, topics: Topics, **values: Any
) -> "AggregatorSettings":
    """In-process aggregator settings on this test's database and topics."""
    from services.aggregator.settings import AggregatorSettings

    return AggregatorSettings(
        database_url=database,
        kafka_bootstrap=bootstrap,
        group_id=f"agg-{topics.events}",
        **topics.kwargs(),
        **values,
    )


def ingest_process(
    database: str, bootstrap: str, topics: Topics, log: Path, **settings: Any
) -> ServiceProcess:
    """Ingest as a child process on a free port (same port across restarts)."""
    from devtools.localstack import free_port

    values = {
        "database_url": database,
        "kafka_bootstrap": bootstrap,
        "port": free_port(),
        "environment": "test",
        **settings,
    }
    env = {**service_env("TIENDO_INGEST_", **values), **topics.env("TIENDO_INGEST_")}
    return ServiceProcess("ingest", env, log)


def notifier_process(
    database: str, bootstrap: str, topics: Topics, log: Path, **settings: Any
) -> ServiceProcess:
    """The notifier as a child process on a free port, for kill -9 tests."""
    from devtools.localstack import free_port

    values = {
        "database_url": database,
        "kafka_bootstrap": bootstrap,
        "group_id": f"ntf-{topics.progress}",
        "port": free_port(),
        "environment": "test",
        # outside development a service refuses the development default secrets
        "webhook_secret": "test-webhook-secret",
        "digest_times": "",
        "bottom_rank_n": 0,
        **settings,
    }
    env = {**service_env("TIENDO_NOTIFIER_", **values), **topics.env("TIENDO_NOTIFIER_")}
    return ServiceProcess("notifier", env, log)


async def until_serving(service: ServiceProcess, timeout: float = 120.0) -> None:
    """Wait for a child process's /readyz to answer 200; fail at once if it died."""
    async with httpx.AsyncClient(base_url=service.url, timeout=5.0) as client:

        async def ready() -> None:
            assert service.alive, f"{service.service} exited: see {service.log}"
            try:
                r = await client.get("/readyz")
            except httpx.TransportError as exc:
                raise AssertionError(f"{service.service}: {exc!r}") from exc
            assert r.status_code == 200, r.text

        await eventually(ready, timeout=timeout)
