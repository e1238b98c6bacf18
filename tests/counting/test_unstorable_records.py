"""A record that PostgreSQL refuses for what it holds, in a way the contract's rules did not
foresee, is found by applying its batch in halves, dead-lettered alone (reason
`cannot be stored`, re-drivable), and every other event of the batch counts. A fault of
every record is not taken for a record's: at most three are set aside, and the consumer
stops as before until it is fixed; a redrive then brings them back.

The unforeseen refusal is a CHECK the test adds to the events table: PostgreSQL itself
refusing one stored row, as a value past a column's range would."""

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator import deadletters
from services.aggregator.app import create_app as create_aggregator
from tests.support.stack import Topics, aggregator_settings, eventually, running
from tests.support.world import WARDS, build_world
from tiendo.event import Event, Kind, encode
from tiendo.kafka import reliable_producer

START = datetime.now(UTC) - timedelta(days=10)
AT = datetime.now(UTC) - timedelta(hours=1)
CCCD = "cccd_collected"


def _events(count: int) -> list[Event]:
    return [
        Event(f"e{i:04}", WARDS[i % 3], CCCD, Kind.INCREMENT, 1 + i % 5, AT - timedelta(seconds=i))
        for i in range(count)
    ]


@pytest.mark.slow
async def test_the_one_record_postgresql_refuses_is_set_aside_and_its_batch_counted(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=START)
    events = _events(600)
    poisoned = {"e0137", "e0452"}  # one in each of two batches
    conn = await asyncpg.connect(database)
    await conn.execute(
        "ALTER TABLE events ADD CONSTRAINT refuses_two CHECK (event_id NOT IN ('e0137', 'e0452'))"
    )
    settings = aggregator_settings(database, kafka.bootstrap, topics).model_copy(
        update={"batch_max_records": 300}
    )
    producer = reliable_producer(kafka.bootstrap, client_id="unstorable")
    await producer.start()
    try:
        for e in events:
            await producer.send(topics.events, encode(e), key=e.unit.encode())
        await producer.flush()
        async with running(create_aggregator(settings)) as client:

            async def applied() -> None:
                stored = {r[0] for r in await conn.fetch("SELECT event_id FROM events")}
                assert stored == {e.event_id for e in events} - poisoned

            await eventually(applied, timeout=90)
            letters = await conn.fetch("SELECT event_id, reason, unit FROM dead_letters")
            assert {r["event_id"] for r in letters} == poisoned
            for r in letters:
                assert r["reason"] == "cannot be stored: SQLSTATE 23514 (CheckViolationError)"
            counted = await conn.fetch(
                "SELECT unit, value FROM progress WHERE indicator = $1 AND unit = ANY($2)",
                CCCD,
                list(WARDS),
            )
            expected = {
                w: sum(e.value for e in events if e.unit == w and e.event_id not in poisoned)
                for w in WARDS
            }
            assert {r["unit"]: r["value"] for r in counted} == expected
            metrics = (await client.get("/metrics")).text
            assert 'tiendo_aggregator_dead_letters_total{reason="unstorable"} 2.0' in metrics
            assert (await client.get("/readyz")).status_code == 200
    finally:
        await producer.stop()
        await conn.close()


@pytest.mark.slow
async def test_a_fault_of_every_record_sets_aside_three_and_stops_until_fixed(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=START)
    events = _events(200)
    conn = await asyncpg.connect(database)
    # refuses every event: a broken migration's check, not any record's doing
    await conn.execute("ALTER TABLE events ADD CONSTRAINT refuses_all CHECK (event_id = '')")
    settings = aggregator_settings(database, kafka.bootstrap, topics)
    producer = reliable_producer(kafka.bootstrap, client_id="unstorable")
    await producer.start()
    try:
        for e in events:
            await producer.send(topics.events, encode(e), key=e.unit.encode())
        await producer.flush()
        async with running(create_aggregator(settings)) as client:

            async def failing() -> None:
                assert (await client.get("/readyz")).status_code == 503

            # restarted on it again and again: three failures in a row show on readiness
            await eventually(failing, timeout=90)
            set_aside = await deadletters.pending(conn)
            assert 1 <= len(set_aside) <= 3
            assert await conn.fetchval("SELECT count(*) FROM events") == 0

            await conn.execute("ALTER TABLE events DROP CONSTRAINT refuses_all")

            async def recovered() -> None:
                assert await conn.fetchval("SELECT count(*) FROM events") == len(events) - len(
                    set_aside
                )

            await eventually(recovered, timeout=90)

            # the ones set aside come back with a redrive, once the cause is fixed
            sent, skipped = await deadletters.redrive(
                conn, producer, topics.events, set_aside, actor="ops"
            )
            assert skipped == []

            async def all_counted() -> None:
                assert await conn.fetchval("SELECT count(*) FROM events") == len(events)
                total = await conn.fetchval(
                    "SELECT value FROM progress WHERE unit = '01' AND indicator = $1", CCCD
                )
                assert total == sum(e.value for e in events)

            await eventually(all_counted, timeout=90)
            assert sent == len(set_aside)
    finally:
        await producer.stop()
        await conn.close()
