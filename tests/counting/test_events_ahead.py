"""An event accepted ahead of the clock (ingest takes up to 5 minutes ahead) is in no live
figure before its moment, as it is in no `as_of` now; at its moment it is counted once,
also when the aggregator restarted meanwhile (docs/semantics.md "Events ahead of the
clock"). On the real broker and database, through ingest."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from tests.support.identities import READER
from tests.support.stack import ServiceKwargs, Topics, eventually, running, until_ready
from tests.support.world import build_world, issue_token

START = datetime.now(UTC) - timedelta(days=10)
# how far ahead the held events are: room for the pipeline to consume them well before
AHEAD = timedelta(seconds=20)


def event(event_id: str, value: int, at: datetime, unit: str = "00004") -> dict[str, object]:
    return {
        "event_id": event_id,
        "unit": unit,
        "indicator": "cccd_collected",
        "value": value,
        "occurred_at": at.isoformat(),
    }


async def figures(aggregator: httpx.AsyncClient, unit: str, as_of: datetime | None) -> Any:
    params = {"as_of": as_of.isoformat()} if as_of else {}
    r = await aggregator.get(f"/v1/campaigns/c1/progress/{unit}", params=params)
    assert r.status_code == 200, r.text
    return r.json()["indicators"][0]


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


@pytest.fixture
async def ingest(
    database: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    await build_world(database, starts_at=START)
    token = await issue_token(database)
    app = create_ingest(
        IngestSettings(database_url=database, kafka_bootstrap=kafka.bootstrap, **topics.kwargs())
    )
    async with running(app) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        await until_ready(client)
        yield client


def aggregator_app(database: str, kafka: KafkaBroker, topics: Topics) -> Any:
    common: ServiceKwargs = {
        "database_url": database,
        "kafka_bootstrap": kafka.bootstrap,
        **topics.kwargs(),
    }
    return create_aggregator(
        AggregatorSettings(**common, group_id=f"agg-{topics.events}", held_check_seconds=0.2)
    )


async def test_an_event_ahead_of_the_clock_counts_at_its_moment_once(
    ingest: httpx.AsyncClient, database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    now = datetime.now(UTC)
    moment = now + AHEAD
    earlier = now - timedelta(hours=1)
    # two ahead (one sent twice, one to a ward of another district), then one of the past
    # behind them on the same ward: once that is counted, the batch before it was consumed
    for body in (
        [event("ahead-1", 5, moment), event("ahead-2", 7, moment, unit="00010")],
        [event("ahead-1", 5, moment), event("past-1", 1, earlier)],
        [event("past-2", 1, earlier, unit="00010")],
    ):
        r = await ingest.post("/v1/events", json={"events": body})
        assert r.status_code == 202, r.text

    async with running(aggregator_app(database, kafka, topics)) as aggregator:
        aggregator.headers.update(READER)

        async def past_counted() -> None:
            assert (await figures(aggregator, "00004", None))["value"] == 1
            assert (await figures(aggregator, "00010", None))["value"] == 1

        await eventually(past_counted)
        assert datetime.now(UTC) < moment, "the pipeline took longer than the margin"
        for unit, value in (("00004", 1), ("00010", 1), ("001", 1), ("01", 2)):
            live = await figures(aggregator, unit, None)
            history = await figures(aggregator, unit, datetime.now(UTC))
            assert (live["value"], live["last_event_at"]) == (
                history["value"],
                history["last_event_at"],
            ), unit
            assert live["value"] == value, unit

        async def all_held() -> None:
            text = (await aggregator.get("/metrics")).text
            # each delivery is held: the repeat is sorted when applied
            assert metric(text, "tiendo_aggregator_events_held") == 3

        await eventually(all_held)

    # the aggregator down across the moment: what it held is in PostgreSQL
    while datetime.now(UTC) <= moment:
        await asyncio.sleep(0.2)

    async with running(aggregator_app(database, kafka, topics)) as aggregator:
        aggregator.headers.update(READER)

        async def ahead_counted() -> None:
            assert (await figures(aggregator, "01", None))["value"] == 2 + 5 + 7

        await eventually(ahead_counted)
        for unit, value in (("00004", 6), ("00010", 8), ("01", 14)):
            live = await figures(aggregator, unit, None)
            history = await figures(aggregator, unit, datetime.now(UTC))
            assert live["value"] == history["value"] == value, unit
            assert live["last_event_at"] == history["last_event_at"], unit
        text = (await aggregator.get("/metrics")).text
        assert metric(text, "tiendo_aggregator_events_held") == 0
        assert metric(text, "tiendo_aggregator_duplicates_skipped_total") == 1

    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch(
            "SELECT event_id, duplicates FROM aggregator.events WHERE event_id LIKE 'ahead-%'"
            " ORDER BY 1"
        )
        assert [(r["event_id"], r["duplicates"]) for r in rows] == [("ahead-1", 1), ("ahead-2", 0)]
        assert await conn.fetchval("SELECT count(*) FROM aggregator.events_ahead") == 0
    finally:
        await conn.close()
