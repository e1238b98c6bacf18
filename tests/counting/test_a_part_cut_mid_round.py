"""Promise 1 (contract §8) with a replica applying on two connections side by side
(`apply_connections`, services/aggregator/fetching.py): a part's connection is cut by the
database in the middle of its transaction, by turns while the other part's is open too
and when it is the last one open (its sibling has committed). The cut part rolls back,
the other commits whole or rolls back, and the replica starts over from what PostgreSQL
holds: every event acknowledged is still counted exactly once.

A part that took a slice of a partition instead of the whole of it loses events here: its
sibling commits the partition's later offset, and its own events roll back (checked with
that mutation: the counts fall short)."""

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from devtools.localstack import KafkaBroker
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from tests.support.stack import Topics, aggregator_process, eventually, running, until_ready
from tests.support.stream import assert_counted_once, post_with_retries, spread_stream
from tests.support.world import build_world, issue_token
from tiendo.counting.batch import COUNTERS_LOCK_KEY

EVENTS = 24_000
CUTS = 6
START = datetime.now(UTC) - timedelta(days=20)

# The apply's transactions mid-flight: those holding its lock (`batch.LOCK_APPLY`).
APPLYING = f"""
SELECT pid FROM pg_locks
WHERE locktype = 'advisory' AND classid = 0 AND objid = {COUNTERS_LOCK_KEY} AND granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY pid
"""


async def _cut(conn: asyncpg.Connection, rng: random.Random, open_: int) -> bool:
    """Terminate one apply transaction while exactly `open_` are open (false: not now)."""
    pids = [r["pid"] for r in await conn.fetch(APPLYING)]
    if len(pids) != open_:
        return False
    return bool(await conn.fetchval("SELECT pg_terminate_backend($1)", rng.choice(pids)))


@pytest.mark.slow
async def test_a_part_cut_mid_round_loses_and_repeats_nothing(
    database: str, kafka: KafkaBroker, topics: Topics, tmp_path: Path
) -> None:
    await build_world(database, starts_at=START)
    token = await issue_token(database)
    rng = random.Random(11)
    events = spread_stream(rng, EVENTS, START)

    log = tmp_path / "aggregator.log"
    # three partitions (the default) over two parts, in rounds small enough to catch open
    aggregator = aggregator_process(
        database,
        kafka.bootstrap,
        topics,
        log,
        batch_max_records=300,
        apply_connections=2,
        metrics_refresh_seconds=60,
    )
    conn = await asyncpg.connect(database)
    settings = IngestSettings(
        database_url=database, kafka_bootstrap=kafka.bootstrap, **topics.kwargs()
    )
    try:
        async with running(create_ingest(settings)) as ingest:
            await until_ready(ingest)
            for i in range(0, EVENTS, 1000):
                await post_with_retries(ingest, token, events[i : i + 1000], rng)
        # the whole stream waits in the topic; the replica applies it while parts are cut
        aggregator.start()
        cuts = 0
        async with asyncio.timeout(180):
            while cuts < CUTS:
                # by turns: one of the two open, then the one left open
                if await _cut(conn, rng, open_=2 if cuts % 2 == 0 else 1):
                    cuts += 1
                    await asyncio.sleep(1.0)  # let it restart and apply again
                else:
                    await asyncio.sleep(0.005)

        async def caught_up() -> None:
            assert await conn.fetchval("SELECT count(*) FROM events") == EVENTS

        await eventually(caught_up, timeout=240, every=1.0)
        await assert_counted_once(conn, database, events)
        # the cuts reached the consumer (its task failed and was started again), and each
        # of the three partitions has its position stored
        assert log.read_text().count("background_task_failed") >= CUTS
        assert (
            await conn.fetchval("SELECT count(*) FROM consumer_offsets WHERE next_offset > 0") == 3
        )
    finally:
        aggregator.stop()
        await conn.close()
