"""The restart tests' stack: a PostgreSQL server and a broker of their own, this test's
database and topics on them, the services as real processes, and what every restart test
checks at the end."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from devtools.localstack import KafkaBroker, PostgresServer
from services.check.run import check
from services.notifier.settings import NotifierSettings
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

    def aggregator(self) -> ServiceProcess:
        return aggregator_process(
            self.database,
            self.kafka.bootstrap,
            self.topics,
            self.logs / "aggregator.log",
            batch_max_records=500,
            metrics_refresh_seconds=60,
            environment="test",
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


async def counted_exactly_once(stack: Stack, load: Load, timeout: float = 90.0) -> None:
    """Every acknowledged event is applied once, and every counter equals their sum."""
    accepted = load.ledger.accepted

    async def all_applied() -> None:
        [row] = await stack.query("SELECT count(*) AS n FROM events")
        assert row["n"] >= len(accepted), f"{row['n']} of {len(accepted)} applied"

    await eventually(all_applied, timeout=timeout, every=0.5)
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
