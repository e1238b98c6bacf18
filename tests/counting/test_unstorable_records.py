"""A record that PostgreSQL refuses for what it holds, in a way the contract's rules did not
foresee, is found by applying its batch in halves, dead-lettered alone (reason
`cannot be stored`, re-drivable), and every other event of the batch counts — without a
restart, live, held ahead of the clock, or in a rebuild. A fault that is not the record's
is not taken for one: a campaign edited into something unusable is left out by the guard
and its events stored; a fault of every record sets aside at most five an hour (across
restarts) and the consumer stops as before until it is fixed; a redrive brings them back.

The unforeseen refusal is a CHECK the test adds to the events table: PostgreSQL itself
refusing one stored row, as a value past a column's range would."""

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator import deadletters
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.consumer import MAX_UNSTORABLE
from services.aggregator.rebuild import rebuild
from tests.support.stack import Topics, aggregator_settings, eventually, running
from tests.support.world import WARDS, build_world
from tiendo.clock import ManualClock
from tiendo.event import Event, Kind, encode
from tiendo.kafka import reliable_producer

START = datetime.now(UTC) - timedelta(days=10)
AT = datetime.now(UTC) - timedelta(hours=1)
CCCD = "cccd_collected"
REASON = "cannot be stored: SQLSTATE 23514 (CheckViolationError)"


def _events(count: int, prefix: str = "e", at: datetime = AT) -> list[Event]:
    return [
        Event(
            f"{prefix}{i:04}",
            WARDS[i % 3],
            CCCD,
            Kind.INCREMENT,
            1 + i % 5,
            at - timedelta(seconds=i),
        )
        for i in range(count)
    ]


async def _send(bootstrap: str, topic: str, events: list[Event]) -> None:
    producer = reliable_producer(bootstrap, client_id="unstorable")
    await producer.start()
    try:
        for e in events:
            await producer.send(topic, encode(e), key=e.unit.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _metric(client: httpx.AsyncClient, line: str) -> float:
    for row in (await client.get("/metrics")).text.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


async def _stored(conn: asyncpg.Connection) -> set[str]:
    return {r[0] for r in await conn.fetch("SELECT event_id FROM events")}


async def _ward_values(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT unit, value FROM progress WHERE indicator = $1 AND unit = ANY($2)",
        CCCD,
        list(WARDS),
    )
    return {r["unit"]: r["value"] for r in rows}


def _expected(events: list[Event], left_out: set[str]) -> dict[str, int]:
    return {
        w: sum(e.value for e in events if e.unit == w and e.event_id not in left_out) for w in WARDS
    }


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
    settings = aggregator_settings(database, kafka.bootstrap, topics, batch_max_records=300)
    try:
        await _send(kafka.bootstrap, topics.events, events)
        async with running(create_aggregator(settings)) as client:

            async def applied() -> None:
                assert await _stored(conn) == {e.event_id for e in events} - poisoned

            await eventually(applied, timeout=90)
            letters = await conn.fetch("SELECT event_id, reason FROM dead_letters")
            assert {r["event_id"] for r in letters} == poisoned
            assert {r["reason"] for r in letters} == {REASON}
            assert await _ward_values(conn) == _expected(events, poisoned)
            unstorable = 'tiendo_aggregator_dead_letters_total{reason="unstorable"}'
            assert await _metric(client, unstorable) == 2.0
            assert await _metric(client, "tiendo_aggregator_parts_isolated_total") >= 1.0
            # found in place: the consumer never restarted on it
            restarts = 'tiendo_background_restarts_total{task="consumer"}'
            assert await _metric(client, restarts) == 0.0
            assert (await client.get("/readyz")).status_code == 200

        # a rebuild meets the same record and goes past it the same way
        await conn.execute("TRUNCATE dead_letters")
        done = await rebuild(settings, actor="ops")
        assert done.records == len(events)
        assert await _stored(conn) == {e.event_id for e in events} - poisoned
        assert await _ward_values(conn) == _expected(events, poisoned)
        assert await conn.fetchval("SELECT count(*) FROM recounts") == 0
    finally:
        await conn.close()


@pytest.mark.slow
async def test_a_held_event_postgresql_refuses_is_set_aside_and_the_others_released(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=START)
    now = datetime.now(UTC)
    clock = ManualClock(now)
    # ahead of the aggregator's clock: held, then released once their moment has come
    ahead = _events(40, prefix="h", at=now + timedelta(minutes=3))
    conn = await asyncpg.connect(database)
    await conn.execute("ALTER TABLE events ADD CONSTRAINT refuses_one CHECK (event_id <> 'h0017')")
    settings = aggregator_settings(database, kafka.bootstrap, topics, held_check_seconds=0.2)
    try:
        async with running(create_aggregator(settings, clock)) as client:
            await _send(kafka.bootstrap, topics.events, ahead)

            async def held() -> None:
                assert await conn.fetchval("SELECT count(*) FROM events_ahead") == len(ahead)

            await eventually(held, timeout=60)
            clock.advance(timedelta(minutes=4))

            async def released() -> None:
                assert await _stored(conn) == {e.event_id for e in ahead} - {"h0017"}
                assert await conn.fetchval("SELECT count(*) FROM events_ahead") == 0

            await eventually(released, timeout=60)
            (letter,) = await conn.fetch("SELECT event_id, reason FROM dead_letters")
            assert tuple(letter) == ("h0017", REASON)
            assert await _ward_values(conn) == _expected(ahead, {"h0017"})
            restarts = 'tiendo_background_restarts_total{task="held_events"}'
            assert await _metric(client, restarts) == 0.0
    finally:
        await conn.close()


@pytest.mark.slow
async def test_a_campaign_edited_into_an_unusable_one_is_left_out_not_its_events(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=START)
    events = _events(30)
    conn = await asyncpg.connect(database)
    settings = aggregator_settings(database, kafka.bootstrap, topics)
    try:
        async with running(create_aggregator(settings)):
            await _send(kafka.bootstrap, topics.events, events[:10])

            async def first() -> None:
                assert len(await _stored(conn)) == 10

            await eventually(first, timeout=60)
            # behind the guard's back: the row changed, its stamp not (a data error, 22023,
            # on every batch that counts for it; not any event's doing)
            await conn.execute("UPDATE campaigns SET timezone = 'Asia/Hanoi_typo'")
            await _send(kafka.bootstrap, topics.events, events[10:])

            async def rest() -> None:
                assert await _stored(conn) == {e.event_id for e in events}

            await eventually(rest, timeout=60)
            assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0
    finally:
        await conn.close()


@pytest.mark.slow
async def test_a_fault_of_every_record_sets_aside_a_few_an_hour_and_stops_until_fixed(
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
        await _send(kafka.bootstrap, topics.events, events)
        async with running(create_aggregator(settings)) as client:

            async def failing() -> None:
                assert (await client.get("/readyz")).status_code == 503

            # restarted on it again and again: three failures in a row show on readiness
            await eventually(failing, timeout=90)
            restarts = 'tiendo_background_restarts_total{task="consumer"}'

            async def restarted_more() -> None:
                assert await _metric(client, restarts) >= 5

            # restarts do not reset the cap: it is counted in PostgreSQL
            await eventually(restarted_more, timeout=90)
            set_aside = await deadletters.pending(conn)
            assert len(set_aside) == MAX_UNSTORABLE
            assert await conn.fetchval("SELECT count(*) FROM events") == 0

            await conn.execute("ALTER TABLE events DROP CONSTRAINT refuses_all")

            async def recovered() -> None:
                assert len(await _stored(conn)) == len(events) - MAX_UNSTORABLE

            await eventually(recovered, timeout=90)
            assert len(await deadletters.pending(conn)) == MAX_UNSTORABLE

            # the ones set aside come back with a redrive, once the cause is fixed
            sent, skipped = await deadletters.redrive(
                conn, producer, topics.events, set_aside, actor="ops"
            )
            assert (sent, skipped) == (MAX_UNSTORABLE, [])

            async def all_counted() -> None:
                assert await _stored(conn) == {e.event_id for e in events}
                assert await _ward_values(conn) == _expected(events, set())

            await eventually(all_counted, timeout=90)
    finally:
        await producer.stop()
        await conn.close()
