"""A round's parts (`apply_connections`) fail alone: when one part's transaction fails,
the others still commit, so that a round always moves on.

Two parts that lock the same rows in other orders (a citizen's stored winner dethroned in
one partition while its repeat arrives in another) can deadlock; PostgreSQL's detector
then fails one of them. When that failure cancelled the other part too, nothing of the
round was committed, the restarted consumer fetched the same round again and deadlocked
again: `test_order_independence` stalled that way, 40 restarts in 8 minutes, once a
replica applied its three partitions on three connections. Here the failed part's
connection is closed before its transaction starts, so that it fails while its sibling is
still applying, whatever the box's speed."""

import asyncio
import random
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator.consumer import Applier
from services.aggregator.metrics import AggregatorMetrics
from services.aggregator.prepared import Prepared
from services.aggregator.repository import apply as apply_sql
from services.aggregator.repository import positions as position_sql
from services.aggregator.settings import AggregatorSettings
from tests.support.stack import Topics
from tests.support.stream import assert_counted_once, spread_stream
from tests.support.world import build_world
from tiendo.clock import SystemClock
from tiendo.counting.batch import staging_row
from tiendo.event import Event, Kind
from tiendo.kafka import reliable_producer
from tiendo.producers import ReplacedProducer

START = datetime.now(UTC) - timedelta(days=20)
EVENTS = 3_000


def _part(partition: int, events: list[dict[str, str | int]]) -> Prepared:
    rows = [
        staging_row(
            Event(
                str(e["event_id"]),
                str(e["unit"]),
                str(e["indicator"]),
                Kind.INCREMENT,
                int(e["value"]),
                datetime.fromisoformat(str(e["occurred_at"])),
            ),
            partition,
            offset,
        )
        for offset, e in enumerate(events)
    ]
    return Prepared(len(rows), rows, {}, [], {partition: len(rows)})


async def test_a_failed_part_leaves_its_sibling_to_commit(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=START)
    events = spread_stream(random.Random(5), 2 * EVENTS, START)
    settings = AggregatorSettings(
        database_url=database, kafka_bootstrap=kafka.bootstrap, **topics.kwargs()
    )
    producers = ReplacedProducer(lambda: reliable_producer(kafka.bootstrap, client_id="test-parts"))
    pool = await asyncpg.create_pool(database, min_size=0, max_size=1)
    applier = Applier(
        settings, pool, producers, AggregatorMetrics(), SystemClock(), publish_feed=False
    )
    applying, failing = await asyncpg.connect(database), await asyncpg.connect(database)
    try:
        await apply_sql.prepare(applying)
        await failing.close()
        with pytest.raises(asyncpg.InterfaceError):
            await applier.apply_parts(
                [applying, failing], [_part(0, events[:EVENTS]), _part(1, events[EVENTS:])]
            )
        # the sibling committed its partition whole, with its next offset; the failed
        # part's partition is left to be fetched again
        offsets = await position_sql.load_offsets(
            applying, settings.group_id, settings.topic_events
        )
        assert offsets == {0: EVENTS}
        await assert_counted_once(applying, database, events[:EVENTS])
    finally:
        await applying.close()
        await pool.close()
        await producers.stop()


async def _waiting_for_a_lock(observer: asyncpg.Connection, pid: int) -> bool:
    row = await observer.fetchrow(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
    )
    return row is not None and row["wait_event_type"] == "Lock"


async def test_a_part_lost_to_a_deadlock_is_applied_again(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    """A real deadlock, made on purpose: another transaction holds a ward's counter that
    the part locks after taking the apply lock (shared), then asks for the apply lock
    itself (exclusive, as a re-plan does). The part waited first, so PostgreSQL's detector
    fails the part; it is applied again once the other transaction commits, in the same
    round, without failing the consumer."""
    await build_world(database, starts_at=START)
    events = spread_stream(random.Random(7), EVENTS, START)
    settings = AggregatorSettings(
        database_url=database, kafka_bootstrap=kafka.bootstrap, **topics.kwargs()
    )
    producers = ReplacedProducer(lambda: reliable_producer(kafka.bootstrap, client_id="test-dl"))
    pool = await asyncpg.create_pool(database, min_size=0, max_size=1)
    metrics = AggregatorMetrics()
    applier = Applier(settings, pool, producers, metrics, SystemClock(), publish_feed=False)
    applying, other = await asyncpg.connect(database), await asyncpg.connect(database)
    observer = await asyncpg.connect(database)
    try:
        await apply_sql.prepare(applying)
        # PostgreSQL looks for a cycle once per wait, in the waiting backend, when its
        # deadlock_timeout passes: the part's looks 5 s into its wait, long after the cycle
        # is made, and before the other's would (60 s), however slow the box
        await applying.execute("SET deadlock_timeout = '5s'")
        await other.execute("SET deadlock_timeout = '60s'")
        ward = str(events[0]["unit"])
        blocking = other.transaction()
        await blocking.start()
        await other.execute(
            "SELECT 1 FROM progress WHERE campaign_id = 'c1' AND unit = $1 FOR UPDATE", ward
        )
        part = asyncio.create_task(applier.apply_parts([applying], [_part(0, events)]))
        pid = applying.get_server_pid()
        for _ in range(600):
            if await _waiting_for_a_lock(observer, pid):
                break
            await asyncio.sleep(0.05)
        assert await _waiting_for_a_lock(observer, pid), "the part never waited for the ward"
        # the cycle: the part waits for the ward, this waits for the part's apply lock;
        # granted once the detector has failed the part
        await other.execute(apply_sql.LOCK_REPLAN)
        await blocking.commit()
        await asyncio.wait_for(part, 60)
        assert (
            metrics.registry.get_sample_value("tiendo_aggregator_parts_applied_again_total") == 1.0
        )
        offsets = await position_sql.load_offsets(
            applying, settings.group_id, settings.topic_events
        )
        assert offsets == {0: EVENTS}
        await assert_counted_once(applying, database, events)
    finally:
        for conn in (applying, other, observer):
            await conn.close()
        await pool.close()
        await producers.stop()
