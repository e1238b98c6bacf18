"""Promise 1 (contract §8): an event answered 202 is counted exactly once, whatever crashes.

The aggregator runs as a real process and is killed with SIGKILL several times in the
middle of a stream of 50,000 events (5 % of them sent twice); after the last restart every
counter must equal an independent recomputation of what was sent."""

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import asyncpg
import pytest

from devtools.localstack import KafkaBroker
from services.check.run import check_round
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.notifier.settings import NotifierSettings
from tests.support.stack import (
    Topics,
    aggregator_process,
    eventually,
    running,
    until_ready,
)
from tests.support.world import TREE, build_world, issue_token

EVENTS = 50_000
START = datetime.now(UTC) - timedelta(days=20)
PARENT = {u.code: u.parent_code for u in TREE}


def lineage(unit: str) -> list[str]:
    chain = [unit]
    while (parent := PARENT[chain[-1]]) is not None:
        chain.append(parent)
    return chain


@pytest.mark.slow
async def test_event_acknowledged_before_a_crash_is_counted_once(
    database: str, kafka: KafkaBroker, topics: Topics, tmp_path: Path
) -> None:
    await build_world(database, starts_at=START)
    token = await issue_token(database)
    rng = random.Random(7)
    units = ["00004", "00007", "00010", "001", "002"]
    events: list[dict[str, str | int]] = [
        {
            "event_id": f"ev-{i}",
            "unit": rng.choice(units),
            "indicator": "cccd_collected",
            "value": rng.choice([1, 1, 2, 3, -1]),
            "occurred_at": (START + timedelta(seconds=rng.randrange(19 * 86400))).isoformat(),
        }
        for i in range(EVENTS)
    ]

    expected: Counter[str] = Counter()
    for e in events:
        for code in lineage(str(e["unit"])):
            expected[code] += int(e["value"])

    aggregator = aggregator_process(
        database,
        kafka.bootstrap,
        topics,
        tmp_path / "aggregator.log",
        batch_max_records=400,
        metrics_refresh_seconds=60,
    )

    conn = await asyncpg.connect(database)

    async def applied() -> int:
        return int(await conn.fetchval("SELECT count(*) FROM events"))

    settings = IngestSettings(
        database_url=database, kafka_bootstrap=kafka.bootstrap, **topics.kwargs()
    )
    try:
        async with running(create_ingest(settings)) as ingest:
            await until_ready(ingest)
            aggregator.start()
            kills = 0
            for i in range(0, EVENTS, 1000):
                chunk = events[i : i + 1000]
                # each batch, then 5 % of it again, as a client retrying after a timeout
                for batch in (chunk, rng.sample(chunk, len(chunk) // 20)):
                    r = await ingest.post(
                        "/v1/events",
                        json={"events": batch},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert r.status_code == 202, r.text
                if i and i % 15_000 == 0:
                    # Kill it while it is applying, then bring it back.
                    before = await applied()
                    await eventually(partial(_grown, applied, before), timeout=60)
                    aggregator.kill()
                    kills += 1
                    aggregator.start()
        assert kills >= 3

        async def caught_up() -> None:
            assert await applied() == EVENTS

        await eventually(caught_up, timeout=240, every=1.0)
        # one more crash after catching up: a replay must change nothing
        aggregator.kill()
        aggregator.start()
        await asyncio.sleep(5)

        rows = await conn.fetch(
            "SELECT unit, value FROM progress"
            " WHERE campaign_id = 'c1' AND indicator = 'cccd_collected'"
        )
        assert {r["unit"]: r["value"] for r in rows} == {
            code: expected.get(code, 0) for code in PARENT
        }
        # the city's day rollups hold every unit's increments, and every event once
        daily = await conn.fetchrow(
            "SELECT sum(increments) AS increments, sum(events) AS events FROM subtree_days"
            " WHERE campaign_id = 'c1' AND unit = '01'"
        )
        assert daily is not None
        assert daily["increments"] == sum(int(e["value"]) for e in events)
        assert daily["events"] == EVENTS
        # `tiendo check`: after the crashes, every live counter equals its history
        found = await check_round(
            conn, NotifierSettings(database_url=database), datetime.now(UTC), alerts=False
        )
        assert [str(d) for d in found.disagreements] == []
    finally:
        aggregator.stop()
        await conn.close()


async def _grown(applied: Callable[[], Awaitable[int]], before: int) -> None:
    assert await applied() > before
