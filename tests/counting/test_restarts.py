"""Promises 1 and 2 (contract §8) across restarts of the infrastructure under running services.

Ingest, the aggregator and the notifier run as real processes while PostgreSQL is stopped
(fast, immediate, SIGKILL) and started again, the Kafka broker is stopped and killed, and
ingest is killed with SIGKILL mid-request. The services are never restarted for the
infrastructure's sake: they must recover by themselves. At the end every event answered
202 is counted exactly once.

The servers are the module's own (tests/support/restarts.py); tests/alerts/
test_alerts_across_restarts.py holds promise 4 under the same restarts."""

import asyncio
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.support.load import Load
from tests.support.restarts import (
    INDICATORS,
    START,
    UNITS,
    Stack,
    counted_exactly_once,
    everything_agrees,
    ingest_client,
    recovered_by_themselves,
    servers_fixture,  # noqa: F401  (a fixture, used through `stack`)
    stack_fixture,  # noqa: F401  (the `stack` fixture)
    started,
    while_applying,
)
from tests.support.stack import eventually, until_serving
from tests.support.world import build_world, issue_token
from tiendo.counting.batch import COUNTERS_LOCK_KEY
from tiendo.events import unit_progress


@pytest.mark.slow
async def test_events_acknowledged_around_database_restarts_are_counted_once(stack: Stack) -> None:
    await build_world(stack.database, starts_at=START, indicators=INDICATORS)
    token = await issue_token(stack.database)
    ingest, aggregator, notifier = stack.ingest(), stack.aggregator(), stack.notifier()
    pg = stack.postgres
    async with (
        started(ingest, aggregator, notifier) as pids,
        ingest_client(ingest, token) as client,
    ):
        # snapshots and citizens too: their rules must hold across the restarts as well
        load = Load(client, UNITS, INDICATORS, mixed=True)
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
        await counted_exactly_once(stack, load, aggregator)
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
        # snapshots and citizens too: their rules must hold across the restarts as well
        load = Load(client, UNITS, INDICATORS, mixed=True)
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
            restarted_at = datetime.now(UTC)
            await load.accepted_at_least(len(load.ledger.accepted) + 2000)
            await load.stop()
        finally:
            await load.cancel()
            await stack.servers.ensure_running()

        await counted_exactly_once(stack, load, aggregator)
        await everything_agrees(stack)
        await recovered_by_themselves(pids, ingest, aggregator, notifier)
    # the progress feed flows again: an idempotent producer that lived through the kill
    # refused every later batch (OutOfOrderSequenceNumber) until the aggregator restarted
    assert await _latest_progress_update(stack) > restarted_at


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
        await counted_exactly_once(stack, load, aggregator)


@pytest.mark.slow
async def test_a_consumer_stuck_past_its_stale_after_is_restarted_and_counts_exactly_once(
    stack: Stack,
) -> None:
    """The consumer held in a transaction that cannot go on (here the counters' lock, held
    as a rebuild holds it): after its `stale_after` it is logged with where it waited,
    cancelled with its transaction and started again, and every event still counts once."""
    await build_world(stack.database, starts_at=START, indicators=INDICATORS)
    token = await issue_token(stack.database)
    ingest, aggregator = stack.ingest(), stack.aggregator(consumer_stale_after_seconds=5)
    async with (
        started(ingest, aggregator) as pids,
        ingest_client(ingest, token) as client,
        httpx.AsyncClient(base_url=aggregator.url, timeout=10.0) as reader,
    ):
        # snapshots and citizens too: their rules must hold across the restarts as well
        load = Load(client, UNITS, INDICATORS, mixed=True)
        load.start()
        holder = await asyncpg.connect(stack.database)
        try:
            await while_applying(stack, load, 2000)
            await holder.execute("SELECT pg_advisory_lock($1)", COUNTERS_LOCK_KEY)

            async def restarted_twice() -> None:
                consumer = (await reader.get("/readyz")).json()["loops"]["consumer"]
                assert consumer["restarts"] >= 2, consumer

            await eventually(restarted_twice, timeout=60, every=0.5)
            readiness = await reader.get("/readyz")
            assert readiness.status_code == 503
            assert readiness.json()["loops"]["consumer"]["last_error"].startswith("stuck")
            # the cancelled runs' transactions ended: one waiter at most, the current run's
            [waiting] = await stack.query(
                "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            assert waiting["n"] <= 1
            stuck = [
                line for line in aggregator.log.read_text().splitlines() if "task_stuck" in line
            ]
            assert len(stuck) >= 2
            assert "lock_apply" in stuck[0]  # where it waited
            await holder.execute("SELECT pg_advisory_unlock($1)", COUNTERS_LOCK_KEY)
            await load.accepted_at_least(len(load.ledger.accepted) + 2000)
            await load.stop()
        finally:
            await load.cancel()
            await holder.close()

        await counted_exactly_once(stack, load, aggregator)
        await recovered_by_themselves(pids, ingest, aggregator)


async def _latest_progress_update(stack: Stack) -> datetime:
    """The latest `computed_at` on the test's progress topic."""
    topic = stack.topics.progress
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.kafka.bootstrap)
    await consumer.start()
    latest = datetime.min.replace(tzinfo=UTC)
    try:
        # (a consumer started with a topic and no group knows its partitions)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert partitions
        consumer.unsubscribe()
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        for tp, end in (await consumer.end_offsets(partitions)).items():
            while await consumer.position(tp) < end:
                for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    latest = max(latest, unit_progress.decode(record.value).computed_at)
    finally:
        await consumer.stop()
    return latest
