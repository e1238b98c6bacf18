"""The aggregator's sends after a batch against a broker that fails: the progress feed's
publish (services.aggregator.feed.publish) gives up in its time, so the counting goes on,
and the updates it gave up on still reach the topic once the broker answers again; a
producer that failed is replaced (tiendo.producers.ReplacedProducer)."""

import asyncio
import time
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from devtools.localstack import KafkaBroker
from services.aggregator import feed
from tests.support.pausing import paused
from tests.support.stack import Topics
from tests.support.world import build_world
from tiendo.events import unit_progress
from tiendo.kafka import TopicSpec, ensure_topics, reliable_producer
from tiendo.producers import ReplacedProducer, acknowledged


async def test_an_unanswered_publish_gives_up_in_time_and_its_updates_still_arrive(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=datetime(2026, 11, 1, tzinfo=UTC))
    conn = await asyncpg.connect(database)
    try:
        counters = await feed.load_all(conn)
        campaigns = await feed.load_campaigns(conn)
    finally:
        await conn.close()
    assert counters
    await ensure_topics(kafka.bootstrap, [TopicSpec(topics.progress, 3, compacted=True)])
    producer = reliable_producer(kafka.bootstrap, client_id="test-feed")
    await producer.start()
    first = datetime(2026, 11, 2, tzinfo=UTC)
    second = datetime(2026, 11, 3, tzinfo=UTC)
    assert kafka.process is not None
    try:
        # connected and acknowledged while the broker answers
        await feed.publish(producer, topics.progress, counters, campaigns, first, ack_within=30)
        with paused(kafka.process.pid):
            started = time.monotonic()
            with pytest.raises(KafkaTimeoutError):
                await feed.publish(
                    producer, topics.progress, counters, campaigns, second, ack_within=1.0
                )
            assert time.monotonic() - started < 10
        await producer.flush()
    finally:
        await producer.stop()
    seen = await _computed_at(kafka.bootstrap, topics.progress, 2 * len(counters))
    assert seen.count(second) == len(counters)


async def _computed_at(bootstrap: str, topic: str, n: int) -> list[datetime]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[datetime] = []
    try:
        async with asyncio.timeout(60):
            while len(got) < n:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got += [unit_progress.decode(r.value).computed_at for r in records]
    finally:
        await consumer.stop()
    return got


async def test_a_retired_producer_is_replaced_by_a_fresh_one_and_stopped(
    kafka: KafkaBroker, topics: Topics
) -> None:
    """After a failed send the aggregator's next send goes through a new producer (an
    idempotent one that lived through a broker's crash may refuse every later batch)."""
    await ensure_topics(kafka.bootstrap, [TopicSpec(topics.dead_letters, 1)])
    made: list[AIOKafkaProducer] = []

    def make() -> AIOKafkaProducer:
        made.append(reliable_producer(kafka.bootstrap, client_id="test-replaced"))
        return made[-1]

    producers = ReplacedProducer(make, grace=2.0)
    try:
        first = await producers.get()
        assert await producers.get() is first
        await acknowledged([await first.send(topics.dead_letters, b"one")], 30)
        producers.retire(first, KafkaError("OutOfOrderSequenceNumber"))
        producers.retire(first, KafkaError("the same failure, seen by another send"))
        second = await producers.get()
        assert second is not first
        assert producers.replaced == 1
        await acknowledged([await second.send(topics.dead_letters, b"two")], 30)
    finally:
        await producers.stop()
    assert len(made) == 2
    assert all(p._closed for p in made)  # the retired one too
