"""Promise 1 (contract §8): an event answered 202 is counted exactly once, whatever crashes.

The aggregator runs as a real process and is killed with SIGKILL several times in the
middle of a stream of 50,000 events (5 % of them sent twice); after the last restart every
counter must equal an independent recomputation of what was sent."""

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import asyncpg
import pytest

from devtools.localstack import KafkaBroker
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from tests.support.stack import (
    Topics,
    aggregator_process,
    eventually,
    running,
    until_ready,
)
from tests.support.stream import assert_counted_once, post_with_retries, spread_stream
from tests.support.world import build_world, issue_token

EVENTS = 50_000
START = datetime.now(UTC) - timedelta(days=20)


@pytest.mark.slow
async def test_event_acknowledged_before_a_crash_is_counted_once(
    database: str, kafka: KafkaBroker, topics: Topics, tmp_path: Path
) -> None:
    await build_world(database, starts_at=START)
    token = await issue_token(database)
    rng = random.Random(7)
    events = spread_stream(rng, EVENTS, START)
    aggregator = aggregator_process(
        database,
        kafka.bootstrap,
        topics,
        tmp_path / "aggregator.log",
        batch_max_records=400,
        metrics_refresh_seconds=60,
    )

    conn = await asyncpg.connect(database)

    async def applied() -> int:
        return int(await conn.fetchval("SELECT count(*) FROM events"))

    settings = IngestSettings(
        database_url=database, kafka_bootstrap=kafka.bootstrap, **topics.kwargs()
    )
    try:
        async with running(create_ingest(settings)) as ingest:
            await until_ready(ingest)
            aggregator.start()
            kills = 0
            for i in range(0, EVENTS, 1000):
                await post_with_retries(ingest, token, events[i : i + 1000], rng)
                if i and i % 15_000 == 0:
                    # Kill it while it is applying, then bring it back.
                    before = await applied()
                    await eventually(partial(_grown, applied, before), timeout=60)
                    aggregator.kill()
                    kills += 1
                    aggregator.start()
        assert kills >= 3

        async def caught_up() -> None:
            assert await applied() == EVENTS

        await eventually(caught_up, timeout=240, every=1.0)
        # one more crash after catching up: a replay must change nothing
        aggregator.kill()
        aggregator.start()
        await asyncio.sleep(5)

        await assert_counted_once(conn, database, events)
    finally:
        aggregator.stop()
        await conn.close()


async def _grown(applied: Callable[[], Awaitable[int]], before: int) -> None:
    assert await applied() > before
