"""The client kit against real ingest: it batches, waits out 429s and retries with the
same event_ids, reports a refusal with the server's errors, and its subjects pass."""

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.ingest.app import create_app
from tests.ingest.test_ingest_api import read_topic, settings_for
from tests.support.stack import Topics, eventually
from tests.support.world import build_world, issue_token
from tiendo.event import decode

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
from tiendo_client import AsyncClient, Event, Rejected, RetryPolicy, subject_hash

KEY = b"campaign subject key, 32 bytes!!"
# a transport into a running ingest, and a token it accepts
IngestApp = tuple[httpx.ASGITransport, str]


@pytest.fixture
async def ingest_app(database: str, kafka: KafkaBroker, topics: Topics) -> AsyncIterator[IngestApp]:
    await build_world(database, starts_at=datetime.now(UTC) - timedelta(days=1))
    token = await issue_token(database)
    settings = settings_for(
        database,
        kafka.bootstrap,
        topics,
        rate_limit_events_per_second=400.0,
        rate_limit_burst_events=1000,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as probe:

            async def ready() -> None:
                assert (await probe.get("/readyz")).status_code == 200

            await eventually(ready)
        yield transport, token


async def test_the_client_batches_and_rides_out_rate_limits_with_the_same_ids(
    ingest_app: IngestApp, kafka: KafkaBroker, topics: Topics
) -> None:
    transport, token = ingest_app
    now = datetime.now(UTC)
    events = [
        Event.increment("00004", "cccd_collected", occurred_at=now - timedelta(minutes=i % 60))
        for i in range(2400)
    ]
    events.append(
        Event.increment(
            "00007", "cccd_collected", occurred_at=now, subject=subject_hash(KEY, "001203004567")
        )
    )
    async with AsyncClient(
        "http://ingest", token, transport=transport, retry=RetryPolicy(attempts=30, max_delay=10)
    ) as client:
        assert await client.send(events) == len(events)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as probe:
        metrics = (await probe.get("/metrics")).text
    assert 'tiendo_ingest_rate_limited_requests_total{token="upstream"}' in metrics
    records = await asyncio.wait_for(
        read_topic(kafka.bootstrap, topics.events, at_least=len(events)), 120
    )
    ids = [decode(r.value).event_id for r in records]
    assert sorted(ids) == sorted(e.event_id for e in events)  # each once: 429s publish nothing


async def test_a_refusal_raises_with_the_servers_errors_and_what_was_stored(
    ingest_app: IngestApp,
) -> None:
    transport, token = ingest_app
    now = datetime.now(UTC)
    good = [Event.increment("00004", "cccd_collected", occurred_at=now) for _ in range(3)]
    bad = [
        Event.increment("00004", "cccd_collected", occurred_at=now),
        Event.increment("00004", "cccd_collected", occurred_at=now, subject="001203004567"),
    ]
    async with AsyncClient("http://ingest", token, transport=transport, batch_size=3) as client:
        with pytest.raises(Rejected) as caught:
            await client.send(good + bad)
    assert caught.value.status == 422
    assert caught.value.accepted == 3
    assert caught.value.errors == [
        {
            "index": 1,
            "field": "subject",
            "message": "looks like a raw ID number; send its keyed hash instead",
        }
    ]
    assert caught.value.events == bad
