"""A record that decodes but breaks a rule of contract §4.1 is dead-lettered with the rule
it broke, and the events behind it on its partition still count: staged, PostgreSQL
refused its batch (a NUL in a text column, a district's sum past bigint), and the
consumer, restarted on the same batch forever, stalled the partition while /readyz said 200.
(Ingest refuses such events; a record can still come from another producer, or an older
ingest. The rules: `tiendo.events.rules`.)"""

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from tests.support.stack import Topics, aggregator_settings, eventually, running
from tests.support.world import build_world
from tiendo.event import Event, Kind, encode
from tiendo.kafka import reliable_producer

START = datetime.now(UTC) - timedelta(days=10)
AT = datetime.now(UTC) - timedelta(hours=1)
CCCD = "cccd_collected"

# each case: the records that must be dead-lettered, and the field their reason names
POISON: dict[str, tuple[list[Event], str]] = {
    "nul_in_event_id": ([Event("bad\x00id", "00004", CCCD, Kind.INCREMENT, 1, AT)], "event_id"),
    "nul_in_subject": (
        [Event("bad-s", "00004", CCCD, Kind.INCREMENT, 1, AT, subject="a\x00" + "b" * 62)],
        "subject",
    ),
    # each within bigint, their district's sum past it
    "snapshots_past_bigint": (
        [
            Event("big-1", "00004", CCCD, Kind.SNAPSHOT, 2**62 + 1, AT),
            Event("big-2", "00007", CCCD, Kind.SNAPSHOT, 2**62 + 1, AT),
        ],
        "value",
    ),
    "negative_snapshot": ([Event("neg-1", "00004", CCCD, Kind.SNAPSHOT, -5, AT)], "value"),
}


async def _dead_lettered_on_the_topic(bootstrap: str, topic: str) -> dict[bytes, str]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        records = [r for b in (await consumer.getmany(timeout_ms=5000)).values() for r in b]
    finally:
        await consumer.stop()
    return {r.value: dict(r.headers)["reason"].decode() for r in records if r.value is not None}


@pytest.mark.parametrize("case", list(POISON))
async def test_a_record_breaking_the_contract_is_dead_lettered_and_the_rest_counted(
    case: str, database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    poison, field = POISON[case]
    await build_world(database, starts_at=START)
    settings = aggregator_settings(database, kafka.bootstrap, topics)
    producer = reliable_producer(kafka.bootstrap, client_id="poison")
    await producer.start()
    conn = await asyncpg.connect(database)
    try:
        async with running(create_aggregator(settings)) as client:
            for e in poison:
                await producer.send_and_wait(topics.events, encode(e), key=e.unit.encode())
            # behind the poison, on each of its partitions
            good = [
                Event("good-1", "00004", CCCD, Kind.INCREMENT, 3, AT),
                Event("good-2", "00007", CCCD, Kind.INCREMENT, 4, AT),
            ]
            for e in good:
                await producer.send_and_wait(topics.events, encode(e), key=e.unit.encode())

            async def applied() -> None:
                rows = await conn.fetch("SELECT event_id, value FROM events ORDER BY event_id")
                assert [tuple(r) for r in rows] == [("good-1", 3), ("good-2", 4)]
                letters = await conn.fetch("SELECT payload, reason FROM dead_letters")
                assert len(letters) == len(poison), [tuple(r) for r in letters]

            await eventually(applied, timeout=60, every=0.5)
            letters = {
                bytes(r["payload"]): r["reason"]
                for r in await conn.fetch("SELECT payload, reason FROM dead_letters")
            }
            assert set(letters) == {encode(e) for e in poison}
            assert all(reason.startswith(f"{field}: ") for reason in letters.values()), letters
            assert "\x00" not in "".join(letters.values())  # the reason never echoes the value
            on_topic = await _dead_lettered_on_the_topic(kafka.bootstrap, topics.dead_letters)
            assert on_topic == letters

            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["loops"]["consumer"]["restarts"] == 0
    finally:
        await producer.stop()
        await conn.close()
