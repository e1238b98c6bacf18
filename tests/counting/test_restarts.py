"""Promises 1, 2 and 4 (SPEC §8) across restarts of the infrastructure under running services.

Ingest, the aggregator and the notifier run as real processes while PostgreSQL is stopped
(fast, immediate, SIGKILL) and started again, the Kafka broker is stopped and killed, and
ingest and the notifier are killed with SIGKILL mid-work. The services are never restarted
for the infrastructure's sake: they must recover by themselves. At the end every event
answered 202 is counted exactly once, and every chief got exactly one message per alert
state change (told apart by delivery id, as a deduplicating receiver would).

These tests stop and kill their servers, so they run a PostgreSQL server and a broker of
their own (one for the module: about 15 s to start), never the session's shared ones."""

import asyncio
import itertools
import json
import shutil
import tempfile
import uuid
from collections import Counter
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
from tests.support.load import Increment, Load, counters
from tests.support.notifier import BEHIND_ONLY, HttpReceiver, tree_with_contacts
from tests.support.stack import (
    ServiceProcess,
    Topics,
    aggregator_process,
    eventually,
    ingest_process,
    notifier_process,
    until_serving,
)
from tests.support.world import build_world, issue_token

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


@pytest.fixture(scope="module")
async def servers() -> AsyncIterator[Servers]:
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


@pytest.fixture
async def stack(servers: Servers, tmp_path: Path) -> AsyncIterator[Stack]:
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


@pytest.mark.slow
@pytest.mark.xfail(
    strict=False,
    reason=(
        "open bug, about half the runs: after the third restart the aggregator's consumer "
        "loop (and the notifier's feed loop) hang in a database call for about the 60 s "
        "command_timeout while PostgreSQL shows every connection idle; remove this mark "
        "with the fix"
    ),
)
async def test_events_acknowledged_around_database_restarts_are_counted_once(stack: Stack) -> None:
    await build_world(stack.database, starts_at=START, indicators=INDICATORS)
    token = await issue_token(stack.database)
    ingest, aggregator, notifier = stack.ingest(), stack.aggregator(), stack.notifier()
    pg = stack.postgres
    async with (
        started(ingest, aggregator, notifier) as pids,
        ingest_client(ingest, token) as client,
    ):
        load = Load(client, UNITS, INDICATORS)
        load.start()
        accepted_while_down = 0
        try:
            for stop in (pg.stop, pg.stop_immediately, pg.kill):
                await while_applying(stack, load, 2000)
                await asyncio.to_thread(stop)
                before = len(load.ledger.accepted)
                await asyncio.sleep(1.5)
                # ingest needs no database to take events: these must be counted later
                accepted_while_down += len(load.ledger.accepted) - before
                await asyncio.to_thread(pg.start)
            await load.accepted_at_least(len(load.ledger.accepted) + 2000)
            await load.stop()
        finally:
            await load.cancel()
            await stack.servers.ensure_running()

        assert accepted_while_down > 0
        await counted_exactly_once(stack, load)
        await everything_agrees(stack)
        await recovered_by_themselves(pids, ingest, aggregator, notifier)
    # the aggregator did see the outages (and survived them)
    assert "background_task_failed" in aggregator.log.read_text()


@pytest.mark.slow
async def test_events_retried_through_broker_restarts_are_counted_once(stack: Stack) -> None:
    await build_world(stack.database, starts_at=START, indicators=INDICATORS)
    token = await issue_token(stack.database)
    ingest, aggregator, notifier = stack.ingest(), stack.aggregator(), stack.notifier()
    kafka = stack.kafka
    async with (
        started(ingest, aggregator, notifier) as pids,
        ingest_client(ingest, token) as client,
    ):
        load = Load(client, UNITS, INDICATORS)
        load.start()
        try:
            for stop in (kafka.stop, kafka.kill):
                await while_applying(stack, load, 2000)
                refused = load.ledger.answers["503"]
                await asyncio.to_thread(stop)
                await asyncio.sleep(1.0)
                await asyncio.to_thread(kafka.start)
                # the clients were refused meanwhile and retried the same event_ids
                assert load.ledger.answers["503"] > refused
            await load.accepted_at_least(len(load.ledger.accepted) + 2000)
            await load.stop()
        finally:
            await load.cancel()
            await stack.servers.ensure_running()

        await counted_exactly_once(stack, load)
        await everything_agrees(stack)
        await recovered_by_themselves(pids, ingest, aggregator, notifier)


@pytest.mark.slow
async def test_batches_cut_by_killing_ingest_and_retried_are_counted_once(stack: Stack) -> None:
    await build_world(stack.database, starts_at=START, indicators=INDICATORS)
    token = await issue_token(stack.database)
    ingest, aggregator = stack.ingest(), stack.aggregator()
    async with started(ingest, aggregator), ingest_client(ingest, token) as client:
        # large batches: most of the time one is being validated or published
        load = Load(client, UNITS, INDICATORS, batch=1000, pause=0.0)
        load.start()
        try:
            for _ in range(3):
                await load.accepted_at_least(len(load.ledger.accepted) + 5000)

                async def mid_request() -> None:
                    assert load.in_flight > 0

                await eventually(mid_request, timeout=10, every=0.001)
                ingest.kill()
                ingest.start()  # on the same port; clients retry until it answers
                await until_serving(ingest)
            await load.accepted_at_least(len(load.ledger.accepted) + 5000)
            await load.stop()
        finally:
            await load.cancel()

        assert load.ledger.answers["transport error"] >= 3
        await counted_exactly_once(stack, load)


@pytest.mark.slow
async def test_each_alert_state_change_reaches_its_chief_once_across_restarts(
    stack: Stack, http_receiver: HttpReceiver
) -> None:
    # 10 of 50 days elapsed: every ward is expected at 200 of 1000; `behind` below 0.9 of it.
    units = tree_with_contacts(http_receiver, chat=False)
    await build_world(stack.database, starts_at=START, units=units)
    token = await issue_token(stack.database)
    policy = {**BEHIND_ONLY, "group_wait_seconds": 0, "repeat_interval_seconds": 0}
    [_] = await stack.query(
        "INSERT INTO alert_policies (campaign_id, config) VALUES ('c1', $1) RETURNING 1",
        json.dumps(policy),
    )
    ingest, aggregator, notifier = stack.ingest(), stack.aggregator(), stack.notifier()
    pg, kafka = stack.postgres, stack.kafka
    serial = itertools.count()
    occurred = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()

    def told() -> dict[str, list[str]]:
        """Per chief, the kind of each distinct message (delivery id), in arrival order."""
        out: dict[str, list[str]] = {}
        for r in http_receiver.distinct("hook/").values():
            out.setdefault(r.path.removeprefix("hook/"), []).append(r.json()["kind"])
        return out

    async def until_told(expected: dict[str, list[str]]) -> None:
        async def check() -> None:
            assert told() == expected

        await eventually(check, timeout=60, every=0.2)

    async with (
        started(ingest, aggregator) as pids,
        ingest_client(ingest, token) as client,
    ):
        load = Load(client, UNITS, ("cccd_collected",))

        async def change(*values: tuple[str, int]) -> None:
            """One batch of increments; wait until the aggregator has counted it."""
            await load.send(
                [
                    Increment(f"n-{next(serial)}", unit, "cccd_collected", value, occurred)
                    for unit, value in values
                ]
            )

            async def counted() -> None:
                [row] = await stack.query("SELECT count(*) AS n FROM events")
                assert row["n"] == len(load.ledger.accepted)

            await eventually(counted, timeout=60, every=0.05)

        try:
            # Wards 00004 and 00007 keep pace, 00010 has 50: it and its district 002 are
            # behind; district 001 (500 of 400) and the city (550 of 600) are not.
            await change(("00004", 250), ("00007", 250), ("00010", 50))
            # 1. The notifier is killed while it sends the first messages (receivers
            #    answer after 2 s); a new one takes over once the dead one's lease ends.
            http_receiver.delay = 2.0
            notifier.start()
            await until_serving(notifier)

            async def sending() -> None:
                assert http_receiver.received

            await eventually(sending, timeout=60, every=0.02)
            notifier.kill()
            http_receiver.delay = 0.0
            notifier.start()
            expected = {"00010": ["firing"], "002": ["firing"]}
            await until_told(expected)

            # 2. 00010 catches up; PostgreSQL crash-stops as the change reaches the notifier.
            await change(("00010", 400))
            await stack.restart_postgres(pg.stop_immediately)
            expected = {"00010": ["firing", "resolved"], "002": ["firing", "resolved"]}
            await until_told(expected)

            # 3. 00010 falls behind again (a correction); the broker is killed at once,
            #    possibly before the aggregator has published the change.
            await load.send(
                [Increment(f"n-{next(serial)}", "00010", "cccd_collected", -400, occurred)]
            )
            await stack.restart_kafka(kafka.kill)
            expected = {
                "00010": ["firing", "resolved", "firing"],
                "002": ["firing", "resolved", "firing"],
            }
            await until_told(expected)

            # 4. 00007 falls behind, and with it 001 and the city (350 of 600); the notifier
            #    and PostgreSQL are both killed as the change is counted.
            await change(("00007", -200))
            notifier.kill()
            await stack.restart_postgres(pg.kill)
            notifier.start()
            expected |= {"00007": ["firing"], "001": ["firing"], "01": ["firing"]}
            await until_told(expected)

            async def settled() -> None:
                rows = await stack.query("SELECT status FROM notifications")
                assert {r["status"] for r in rows} == {"delivered"}, rows

            await eventually(settled, timeout=60, every=0.5)
            # more evaluations, and nothing more is sent
            await asyncio.sleep(3)
            assert told() == expected
            await recovered_by_themselves(pids, ingest, aggregator)
            await until_serving(notifier)
            await everything_agrees(stack)
        finally:
            notifier.stop()
            await stack.servers.ensure_running()

    # A second copy under the same delivery id only where a send was cut off before its
    # result was written (at least once to the channel; the id lets the receiver drop it).
    rows = await stack.query("SELECT dedup_key FROM notifications WHERE channel = 'webhook'")
    assert {r["dedup_key"] for r in rows} == set(http_receiver.distinct("hook/"))
    interrupted = {
        r["dedup_key"]
        for r in await stack.query(
            "SELECT n.dedup_key FROM delivery_attempts d"
            " JOIN notifications n ON n.id = d.notification_id WHERE d.finished_at IS NULL"
        )
    }
    arrivals = Counter(r.delivery_id for r in http_receiver.at("hook/"))
    assert {d for d, n in arrivals.items() if n > 1} <= interrupted, arrivals
    assert interrupted, "the first kill did not cut a delivery"
