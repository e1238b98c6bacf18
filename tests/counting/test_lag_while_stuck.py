"""The consumer lag gauge tells a stalled apply: records waiting behind a held lock show as
lag while they wait, not only once a batch commits (services/aggregator/lag.py). Before,
the gauge kept its last value, 0, while 500 records waited behind a re-plan's lock."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.repository import apply as apply_sql
from services.aggregator.settings import AggregatorSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from tests.support.stack import ServiceKwargs, Topics, eventually, running, until_ready
from tests.support.world import build_world, issue_token

START = datetime.now(UTC) - timedelta(days=10)
WAITING = 500
Pipeline = tuple[httpx.AsyncClient, httpx.AsyncClient]


@pytest.fixture
async def pipeline(database: str, kafka: KafkaBroker, topics: Topics) -> AsyncIterator[Pipeline]:
    await build_world(database, starts_at=START)
    token = await issue_token(database)
    common: ServiceKwargs = {
        "database_url": database,
        "kafka_bootstrap": kafka.bootstrap,
        **topics.kwargs(),
    }
    async with (
        running(create_ingest(IngestSettings(**common))) as ingest,
        running(
            create_aggregator(AggregatorSettings(**common, group_id=f"agg-{topics.events}"))
        ) as aggregator,
    ):
        ingest.headers["Authorization"] = f"Bearer {token}"
        await until_ready(ingest)
        await until_ready(aggregator)
        yield ingest, aggregator


def _events(prefix: str, n: int) -> list[dict[str, object]]:
    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    wards = ("00004", "00007", "00010")
    return [
        {
            "event_id": f"{prefix}-{i}",
            "unit": wards[i % len(wards)],
            "indicator": "cccd_collected",
            "value": 1,
            "occurred_at": at,
        }
        for i in range(n)
    ]


async def _post(ingest: httpx.AsyncClient, events: list[dict[str, object]]) -> None:
    r = await ingest.post("/v1/events", json={"events": events})
    assert r.status_code == 202, r.text


async def _scraped(aggregator: httpx.AsyncClient) -> tuple[float, float]:
    """(the lag summed over the replica's partitions, events applied)"""
    text = (await aggregator.get("/metrics")).text
    lag = applied = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "tiendo_aggregator_consumer_lag":
                lag += s.value
            elif s.name == "tiendo_aggregator_events_applied_total":
                applied += s.value
    return lag, applied


async def test_records_waiting_behind_a_held_lock_show_as_lag(
    pipeline: Pipeline, database: str
) -> None:
    ingest, aggregator = pipeline
    await _post(ingest, _events("before", 10))

    async def caught_up() -> None:
        assert await _scraped(aggregator) == (0.0, 10.0)

    await eventually(caught_up)

    holder = await asyncpg.connect(database)
    try:
        held = holder.transaction()
        await held.start()
        # what a re-plan takes: every apply waits for it
        await holder.execute(apply_sql.LOCK_REPLAN)
        await _post(ingest, _events("during", WAITING))

        async def lagging() -> None:
            assert await _scraped(aggregator) == (float(WAITING), 10.0)

        await eventually(lagging, timeout=60)
        await held.rollback()

        async def applied() -> None:
            assert await _scraped(aggregator) == (0.0, float(10 + WAITING))

        await eventually(applied, timeout=60)
    finally:
        await holder.close()
