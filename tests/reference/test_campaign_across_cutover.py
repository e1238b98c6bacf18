"""A campaign that runs across Hà Nội's 1 July 2025 reorganisation, read through the API:
`as_of` before the cut-over answers on the old tree (its wards and districts, with their
targets), after it on the 126 communes (targets carried); the city's target is the same on
both sides."""

import random
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator import admin
from services.aggregator.admin import CampaignIn, TargetIn
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.cli import import_file, import_tree_version
from tests.support.identities import ADMIN_SECRET as ADMIN
from tests.support.identities import READER
from tests.support.stack import Topics, aggregator_settings, running
from tiendo import counting
from tiendo.event import Event, Kind

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DATA = Path(str(resources.files("devtools.demo") / "data"))
START = datetime(2025, 6, 20, tzinfo=TZ)
DEADLINE = datetime(2025, 7, 20, tzinfo=TZ)
BEFORE = datetime(2025, 6, 28, tzinfo=TZ)
AFTER = datetime(2025, 7, 10, tzinfo=TZ)


@pytest.fixture
async def aggregator(
    database: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    async with running(create_aggregator(settings)) as c:
        yield c


async def test_as_of_reads_each_side_of_the_cut_over_on_its_own_tree(
    database: str, aggregator: httpx.AsyncClient
) -> None:
    aggregator.headers.update({"Authorization": f"Bearer {ADMIN}"})
    assert await import_file(aggregator, "units", DATA / "hanoi_units.csv", None, ADMIN) == []
    for day, units, crosswalk in (
        (date(2025, 1, 1), "hanoi_units_2025-01.csv", "hanoi_crosswalk_2025-01_inferred.csv"),
        (date(2025, 7, 1), "hanoi_units_2025.csv", "hanoi_crosswalk_2025.csv"),
    ):
        assert (
            await import_tree_version(aggregator, DATA / units, DATA / crosswalk, day, 90, ADMIN)
            == []
        )
    rng = random.Random(7)
    conn = await asyncpg.connect(database)
    try:
        wards = [
            r["admin_code"]
            for r in await conn.fetch(
                "SELECT admin_code FROM units WHERE level = 3"
                " AND valid_from <= $1 AND $1 < coalesce(valid_to, 'infinity')",
                START,
            )
        ]
        assert len(wards) == 526
        targets = {w: rng.randrange(100, 900) for w in wards}
        async with conn.transaction():
            await admin.upsert_campaign(
                conn,
                "span",
                CampaignIn(
                    name="across July 2025",
                    starts_at=START,
                    deadline=DEADLINE,
                    indicators=["cccd_collected"],
                ),
                "test",
            )
            # official codes, read on the tree at the start: the 526 wards of June 2025
            await admin.upsert_targets(
                conn,
                "span",
                [
                    TargetIn(unit=w, indicator="cccd_collected", target=t)
                    for w, t in targets.items()
                ],
                "test",
            )
        before = {w: rng.randrange(0, 50) for w in wards}
        await counting.apply_events(
            conn,
            [
                Event(
                    event_id=f"b-{w}",
                    unit=w,
                    indicator="cccd_collected",
                    kind=Kind.INCREMENT,
                    value=v,
                    occurred_at=START + timedelta(days=3),
                )
                for w, v in before.items()
                if v
            ],
        )
    finally:
        await conn.close()

    aggregator.headers.update(READER)
    total = sum(targets.values())
    city_before = (
        await aggregator.get("/v1/campaigns/span/progress/01", params={"as_of": BEFORE.isoformat()})
    ).json()["indicators"][0]
    assert (city_before["value"], city_before["target"]) == (sum(before.values()), total)
    assert city_before["children_total"] == 30  # its districts, then
    board = (
        await aggregator.get(
            "/v1/campaigns/span/leaderboard",
            params={
                "level": 3,
                "indicator": "cccd_collected",
                "as_of": BEFORE.isoformat(),
                "limit": 1000,
            },
        )
    ).json()
    assert board["total"] == 526
    by_code = {row["unit"]["admin_code"]: row for row in board["rows"]}
    for w in rng.sample(wards, 40):
        assert (by_code[w]["value"], by_code[w]["target"]) == (before[w], targets[w]), w

    city_after = (
        await aggregator.get("/v1/campaigns/span/progress/01", params={"as_of": AFTER.isoformat()})
    ).json()["indicators"][0]
    # nothing dropped or doubled across the cut-over, figures and targets alike
    assert (city_after["value"], city_after["target"]) == (sum(before.values()), total)
    assert city_after["children_total"] == 126
    communes = (
        await aggregator.get(
            "/v1/campaigns/span/leaderboard",
            params={"level": 2, "indicator": "cccd_collected", "as_of": AFTER.isoformat()},
        )
    ).json()
    assert all(row["unit"]["code"].endswith("@2025-07-01") for row in communes["rows"])
