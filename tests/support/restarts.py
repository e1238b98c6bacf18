"""Restarting the infrastructure under running services: a PostgreSQL server and a Kafka
broker of a test module's own (they get stopped and killed, so never the session's shared
ones; about 15 s to start), each test's database and topics on them, its services as real
processes, and the checks every restart test ends with.

A test module gets the `servers` and `stack` fixtures by importing `servers_fixture` and
`stack_fixture` from here (named apart so that a test's `stack` argument shadows no import)."""

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from devtools.localstack import KafkaBroker, PostgresServer, free_port
from services.check.run import check
from services.notifier.settings import NotifierSettings
from services.schema import migrate_all
from tests.support.databases import clone_database
from tests.support.load import Load, counters
from tests.support.stack import (
    ServiceProcess,
    Topics,
    aggregator_process,
    eventually,
    ingest_process,
    notifier_process,
    until_serving,
)

START = datetime.now(UTC) - timedelta(days=10)
UNITS = ("00004", "00007", "00010", "001", "002")
INDICATORS = ("cccd_collected", "eid_activated_l1")


@dataclass
class Servers:
    postgres: PostgresServer
    kafka: KafkaBroker
    template: str = "restarts_template"

    async def ensure_running(self) -> None:
        """Both servers up (a failed test may have left one stopped)."""
        for server in (self.postgres, self.kafka):
            if not server.running:
                await asyncio.to_thread(server.start)


@pytest.fixture(scope="module", name="servers")
async def servers_fixture() -> AsyncIterator[Servers]:
    # Not pytest's tmp_path, for the reason given in tests/conftest.py.
    folder = Path(tempfile.mkdtemp(prefix="tiendo-restarts-"))
    s = Servers(
        PostgresServer(folder / "pg", free_port(), fast=True),
        KafkaBroker(folder / "kafka", free_port(), free_port(), heap="512m"),
    )
    try:
        await asyncio.gather(asyncio.to_thread(s.postgres.start), asyncio.to_thread(s.kafka.start))
        conn = await asyncpg.connect(s.postgres.dsn())
        await conn.execute(f'CREATE DATABASE "{s.template}"')
        await conn.close()
        conn = await asyncpg.connect(s.postgres.dsn(s.template))
        await migrate_all(conn)
        await conn.close()
        yield s
    finally:
        await asyncio.to_thread(s.kafka.stop)
        await asyncio.to_thread(s.postgres.stop)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Stack:
    """This test's database and topics on the module's servers, and its services."""

    servers: Servers
    database: str
    topics: Topics
    logs: Path

    @property
    def postgres(self) -> PostgresServer:
        return self.servers.postgres

    @property
    def kafka(self) -> KafkaBroker:
        return self.servers.kafka

    def ingest(self, **settings: Any) -> ServiceProcess:
        return ingest_process(
            self.database,
            self.kafka.bootstrap,
            self.topics,
            self.logs / "ingest.log",
            publish_timeout_seconds=2.0,
            retry_after_seconds=1,
            **settings,
        )

    def aggregator(self, **settings: Any) -> ServiceProcess:
        return aggregator_process(
            self.database,
            self.kafka.bootstrap,
            self.topics,
            self.logs / "aggregator.log",
            batch_max_records=500,
            metrics_refresh_seconds=60,
            environment="test",
            **settings,
        )

    def notifier(self, **settings: Any) -> ServiceProcess:
        return notifier_process(
            self.database,
            self.kafka.bootstrap,
            self.topics,
            self.logs / "notifier.log",
            evaluate_every_seconds=0.5,
            delivery_poll_seconds=0.2,
            delivery_timeout_seconds=3,
            delivery_backoff_seconds=0.1,
            delivery_backoff_max_seconds=0.5,
            delivery_lease_seconds=5,
            **settings,
        )

    async def restart_postgres(self, stop: Callable[[], None], down: float = 1.5) -> None:
        await asyncio.to_thread(stop)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.postgres.start)

    async def restart_kafka(self, stop: Callable[[], None], down: float = 1.0) -> None:
        await asyncio.to_thread(stop)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.kafka.start)

    async def query(self, sql: str, *args: object) -> list[asyncpg.Record]:
        """One query on a connection of its own (the server may have restarted since)."""
        conn = await asyncpg.connect(self.database)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()


@pytest.fixture(name="stack")
async def stack_fixture(servers: Servers, tmp_path: Path) -> AsyncIterator[Stack]:
    await servers.ensure_running()
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(servers.postgres.dsn())
    await clone_database(admin, servers.template, name)
    await admin.close()
    try:
        yield Stack(servers, servers.postgres.dsn(name), Topics.unique(), tmp_path)
    finally:
        # whatever the test did to them, the next test finds both servers serving
        await servers.ensure_running()
        admin = await asyncpg.connect(servers.postgres.dsn())
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def started(*services: ServiceProcess) -> AsyncIterator[dict[str, int]]:
    """Start the services, wait until each serves; yield their pids; stop them at the end."""
    try:
        for service in services:
            service.start()
        for service in services:
            await until_serving(service)
        yield {s.service: s.pid for s in services}
    finally:
        for service in services:
            service.stop()


async def recovered_by_themselves(pids: dict[str, int], *services: ServiceProcess) -> None:
    """Each service is still the process started before the restarts, and ready again."""
    for service in services:
        assert service.alive, f"{service.service} died: see {service.log}"
        assert service.pid == pids[service.service], f"{service.service} was restarted"
        await until_serving(service, timeout=60)


def ingest_client(ingest: ServiceProcess, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=ingest.url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
    )


async def counted_exactly_once(
    stack: Stack, load: Load, aggregator: ServiceProcess, timeout: float = 90.0
) -> None:
    """Every acknowledged event is applied once (by `aggregator`), and every counter equals
    their sum."""
    accepted = load.ledger.accepted

    async def all_applied() -> None:
        [row] = await stack.query("SELECT count(*) AS n FROM events")
        assert row["n"] >= len(accepted), f"{row['n']} of {len(accepted)} applied"

    try:
        await eventually(all_applied, timeout=timeout, every=0.5)
    except AssertionError as exc:
        # CI keeps no temporary folders: what the aggregator was doing goes with the failure
        raise AssertionError(f"{exc}\n{await _state_of(aggregator)}") from exc
    ids = {r["event_id"] for r in await stack.query("SELECT event_id FROM events")}
    assert ids == set(accepted), (
        f"missing {len(set(accepted) - ids)}, never acknowledged {len(ids - set(accepted))}"
    )
    conn = await asyncpg.connect(stack.database)
    try:
        live = await counters(conn)
    finally:
        await conn.close()
    expected = load.ledger.expected()
    assert {k: live.get(k, 0) for k in expected} == expected
    assert all(v == 0 for k, v in live.items() if k not in expected), live


async def _state_of(service: ServiceProcess, lines: int = 60) -> str:
    """A service's readiness (a stuck loop shows as stale there) and its log's last lines,
    for a failure's message."""
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=5.0) as client:
            readiness = (await client.get("/readyz")).text
    except httpx.HTTPError as exc:
        readiness = repr(exc)
    log = service.log
    logged = log.read_text(errors="replace").splitlines() if log.exists() else []
    # the batches applied would fill the tail: only the last one, and everything else
    batches = [line for line in logged if "batch_applied" in line]
    tail = [line for line in logged if "batch_applied" not in line][-lines:]
    return (
        f"{service.service} /readyz: {readiness}\n{log}, last batch applied: "
        f"{batches[-1] if batches else None}\n" + "\n".join(tail)
    )


async def everything_agrees(stack: Stack) -> None:
    """`tiendo check` after the chaos: live equals history for every key, and the
    notifier's open alerts are the board's conditions with the board's figures."""
    settings = NotifierSettings(database_url=stack.database, bottom_rank_n=0, digest_times="")

    async def agreed() -> None:
        found = await check(stack.database, settings, 2.0, datetime.now(UTC))
        assert [str(d) for d in found.disagreements] == []

    await eventually(agreed, timeout=60, every=1.0)


async def while_applying(stack: Stack, load: Load, more: int) -> None:
    """Wait until `more` further events are acknowledged and the aggregator is applying."""
    [before] = await stack.query("SELECT count(*) AS n FROM events")
    await load.accepted_at_least(len(load.ledger.accepted) + more)

    async def applying() -> None:
        [now] = await stack.query("SELECT count(*) AS n FROM events")
        assert now["n"] > before["n"]

    await eventually(applying, timeout=60, every=0.1)
