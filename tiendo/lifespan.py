"""What every service's lifespan does: wait for its dependencies, open what it needs, and
close it all in reverse order on the way out (one AsyncExitStack, one teardown)."""

import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
from fastapi import FastAPI

from tiendo.background import Loop, Supervisor
from tiendo.database import Connection, Migrations, create_pool
from tiendo.kafka import TopicSpec, ensure_topics
from tiendo.logs import get_logger
from tiendo.settings import ServiceSettings
from tiendo.startup import wait_for_kafka, wait_for_postgres

log = get_logger(__name__)


@asynccontextmanager
async def teardown(service: str) -> AsyncIterator[AsyncExitStack]:
    """The stack a lifespan registers its resources on; unwound last-in first-out (loops
    stop before the producer they publish to, which stops before the pool closes)."""
    async with AsyncExitStack() as stack:
        stack.callback(log.info, f"{service}_stopped")
        yield stack


async def open_database(
    stack: AsyncExitStack,
    app: FastAPI,
    settings: ServiceSettings,
    migrations: Migrations,
    *,
    max_size: int,
) -> asyncpg.Pool:
    """Wait for PostgreSQL, open the pool (`tiendo.dependencies.Pool` reads it), migrate."""
    await wait_for_postgres(settings.database_url, settings.dependency_timeout_seconds)
    pool = await create_pool(settings.database_url, max_size=max_size)
    stack.push_async_callback(pool.close)
    async with pool.acquire() as conn:
        await migrations.apply(conn)
    app.state.pool = pool
    return pool


async def open_topics(
    settings: ServiceSettings, topics: Sequence[TopicSpec], *, group: str | None = None
) -> None:
    """Wait for Kafka (and the coordinator of the consumer `group`), then create the topics
    the service needs that are missing."""
    await wait_for_kafka(settings.kafka_bootstrap, settings.dependency_timeout_seconds, group=group)
    await ensure_topics(
        settings.kafka_bootstrap, list(topics), wait_seconds=settings.dependency_timeout_seconds
    )


def start_loops(stack: AsyncExitStack, supervisor: Supervisor, loops: Sequence[Loop]) -> None:
    """Start the service's background loops under its supervisor; stopped first on exit."""
    supervisor.start(loops)
    stack.push_async_callback(supervisor.stop)


def started(service: str, **fields: object) -> None:
    """The service is up: it sets the garbage collector up for serving
    (`collect_for_serving`) and says so (`<service>_started`, with how many objects it
    set aside)."""
    log.info(f"{service}_started", frozen_objects=collect_for_serving(), **fields)


# Allocations of tracked objects, net of those freed, between two collections of the
# youngest generation; Python 3.11's default is 700. One ingest request of 1,000 events holds
# a few thousand dicts, events and records alive at once: at 700 it crossed the threshold
# several times, and each crossing walked them and moved them to an older generation,
# where further collections walked them again, though they all die with the request.
# Replaying requests with four in flight (ingest's benchmark load): 748 young, 68 middle
# and 6 full collections over 300 requests, 4-5 % of the time and pauses up to 15 ms;
# at 10,000, 11 young and 1 middle, under 1 %, and the requests took 10 % less time in
# all (fewer objects walked, fewer cache misses). The aggregator's decoding of a
# 20,000-record fetch took the same time either way.
YOUNG_GENERATION_THRESHOLD = 10_000


def collect_for_serving() -> int:
    """Set every object alive now aside from the garbage collector, after a collection
    (so that no garbage is kept with them), and collect the young generation less often
    (`YOUNG_GENERATION_THRESHOLD`); what is created afterwards is collected as before,
    only in larger steps. How many objects are set aside.

    A full collection walks every tracked object, and a read that builds ten thousand
    rows (a leaderboard of every commune) triggers one or two: the aggregator holds about
    120,000 objects once started, all of them for good (modules, the app, its routes), and
    walking them took about a third of such a read (README, "Reads on a national tree")."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)
    return gc.get_freeze_count()


async def ping(pool: asyncpg.Pool) -> None:
    """A round trip to PostgreSQL (for /readyz): raises when it is unreachable."""
    conn: Connection
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
