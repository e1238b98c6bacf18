"""Promises 1 and 2 (contract §8) through a Kafka outage: a real broker is stopped and started
again in the middle of a load. While it is down, ingest answers 503 with Retry-After —
every request within publish_timeout_seconds plus a margin for a loaded machine, none
hangs — and /readyz is false; once it is back, ingest resumes without a restart. Clients
retry with the same event_ids until 202, and the aggregator, reading the topic afterwards,
counts every event answered 202 exactly once."""

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from devtools.localstack import KafkaBroker, free_port
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from tests.ingest.test_ingest_api import read_topic, serving, settings_for
from tests.support.identities import READER
from tests.support.stack import Topics, eventually, running
from tests.support.world import TREE, WARDS, build_world, issue_token
from tiendo.event import decode

START = datetime.now(UTC) - timedelta(days=10)
CLIENTS = 4
BATCHES_PER_CLIENT = 60
BATCH = 50
PARENT = {u.code: u.parent_code for u in TREE}


def rolled_up(by_ward: Counter[str]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for ward, value in by_ward.items():
        code: str | None = ward
        while code is not None:
            totals[code] += value
            code = PARENT[code]
    return {code: totals.get(code, 0) for code in PARENT}


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[KafkaBroker]:
    """A broker of this test's own: stopping the session's would disturb other tests."""
    broker = KafkaBroker(tmp_path / "kafka", free_port(), free_port(), heap="512m")
    await asyncio.to_thread(broker.start)
    yield broker
    await asyncio.to_thread(broker.stop)


@pytest.mark.slow
async def test_every_event_answered_202_through_a_broker_outage_is_counted_exactly_once(
    database: str, broker: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=START)
    token = await issue_token(database)
    settings = settings_for(
        database,
        broker.bootstrap,
        topics,
        publish_timeout_seconds=2.0,
        retry_after_seconds=1,
    )
    # No answer may take longer than the publish timeout; 30 s is for a loaded machine.
    answer_bound = settings.publish_timeout_seconds + 30.0
    rng = random.Random(6)
    accepted: dict[str, tuple[str, int]] = {}  # event_id -> (unit, value), for every 202
    statuses: Counter[int] = Counter()
    during_outage: Counter[int] = Counter()
    outage = asyncio.Event()

    async with serving(settings, token) as ingest:

        async def client(number: int) -> None:
            for b in range(BATCHES_PER_CLIENT):
                events: list[dict[str, str | int]] = [
                    {
                        "event_id": f"c{number}-b{b}-{i}",
                        "unit": rng.choice(WARDS),
                        "indicator": "cccd_collected",
                        "value": rng.choice([1, 2, 3]),
                        "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                    }
                    for i in range(BATCH)
                ]
                while True:  # a client retries the same batch until it is accepted
                    r = await asyncio.wait_for(
                        ingest.post("/v1/events", json={"events": events}), answer_bound
                    )
                    statuses[r.status_code] += 1
                    if outage.is_set():
                        during_outage[r.status_code] += 1
                    if r.status_code == 202:
                        for e in events:
                            accepted[str(e["event_id"])] = (str(e["unit"]), int(e["value"]))
                        break
                    assert r.status_code == 503, r.text
                    assert r.headers["retry-after"] == "1"
                    await asyncio.sleep(0.2)  # Retry-After says 1 s; be quicker to load it
                await asyncio.sleep(0.02)

        load = asyncio.gather(*(client(n) for n in range(CLIENTS)))

        async def some_accepted() -> None:
            assert len(accepted) >= 20 * BATCH

        await eventually(some_accepted, timeout=120)
        outage.set()
        await asyncio.to_thread(broker.stop)

        async def refusing() -> None:
            r = await asyncio.wait_for(ingest.get("/readyz"), answer_bound)
            assert r.status_code == 503
            assert r.json()["kafka"] is False
            assert during_outage[503] >= 10

        await eventually(refusing, timeout=120)
        accepted_during_outage = len(accepted)
        await asyncio.to_thread(broker.start)
        outage.clear()

        async def ready_again() -> None:
            assert (await ingest.get("/readyz")).status_code == 200

        await eventually(ready_again, timeout=120)
        await asyncio.wait_for(load, timeout=600)

    assert len(accepted) == CLIENTS * BATCHES_PER_CLIENT * BATCH
    assert len(accepted) > accepted_during_outage  # it resumed without a restart
    assert statuses[503] >= 10
    assert set(statuses) <= {202, 503}

    # Every acknowledged event is in the topic (some more than once: retries of batches
    # that were partly stored before their 503).
    records = await read_topic(broker.bootstrap, topics.events, at_least=len(accepted))
    in_topic = Counter(decode(r.value).event_id for r in records)
    assert set(accepted) <= set(in_topic)

    aggregator_settings = AggregatorSettings(
        database_url=database,
        kafka_bootstrap=broker.bootstrap,
        group_id=f"agg-{topics.events}",
        metrics_refresh_seconds=60,
        **topics.kwargs(),
    )
    conn = await asyncpg.connect(database)
    try:
        async with running(create_aggregator(aggregator_settings)) as aggregator:
            aggregator.headers.update(READER)

            async def all_applied() -> None:
                assert await conn.fetchval("SELECT count(*) FROM events") == len(accepted)

            await eventually(all_applied, timeout=300, every=1.0)
            by_ward: Counter[str] = Counter()
            for unit, value in accepted.values():
                by_ward[unit] += value
            expected = rolled_up(by_ward)
            for code, value in expected.items():
                r = await aggregator.get(f"/v1/campaigns/c1/progress/{code}")
                assert r.json()["indicators"][0]["value"] == value, code
    finally:
        await conn.close()
