"""The field case of contract §1, reproduced: Hà Nội, order "Mệnh lệnh 01" (10 May - 30 Jun
2023), 579 wards whose CCCD targets sum to 134,329. By 1 Jun the city had 77,992 (58.1 %),
by 3 Jun 124 wards had reached target, and the city reached its target at 00:00 on 15 Jun.
The progress API, `as_of` queries and the leaderboard must say exactly that."""

import random
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from devtools.demo.seed import hanoi_units, hanoi_wards, ward_targets
from devtools.localstack import KafkaBroker
from services.aggregator import admin
from services.aggregator.admin import CampaignIn, TargetIn
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from tests.support.identities import READER
from tests.support.stack import ServiceKwargs, Topics, eventually, running, until_ready
from tests.support.world import issue_token

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
START = datetime(2023, 5, 10, tzinfo=TZ)
DEADLINE = datetime(2023, 7, 1, tzinfo=TZ)
JUNE_1_END = datetime(2023, 6, 1, 23, 59, 59, tzinfo=TZ)
JUNE_3_END = datetime(2023, 6, 3, 23, 59, 59, tzinfo=TZ)
CITY_DONE = datetime(2023, 6, 15, tzinfo=TZ)
ON_JUNE_1 = 77_992
DONE_BY_JUNE_3 = 124


def spread(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Split `total` over the keys in proportion to the weights, exactly."""
    whole = sum(weights.values())
    raw = {k: total * w / whole for k, w in weights.items()}
    out = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - out[k], reverse=True)[: total - sum(out.values())]:
        out[k] += 1
    return out


def campaign_events(targets: dict[str, int], rng: random.Random) -> list[dict[str, object]]:
    """Daily ward reports: 77,992 by the end of 1 Jun, 124 wards at target by 3 Jun, and
    the last missing application collected just before midnight on 14 Jun."""
    by_june_1 = spread(ON_JUNE_1, targets)
    early = set(rng.sample(sorted(targets), DONE_BY_JUNE_3))
    events: list[dict[str, object]] = []

    def report(ward: str, day: datetime, value: int, n: int) -> None:
        if value:
            at = day.replace(hour=rng.randrange(8, 20), minute=rng.randrange(60))
            events.append(
                {
                    "event_id": f"hn-{ward}-{n}",
                    "unit": ward,
                    "indicator": "cccd_collected",
                    "value": value,
                    "occurred_at": at.isoformat(),
                }
            )

    days_to_june_1 = 23  # 10 May .. 1 Jun
    for ward, target in targets.items():
        per_day = spread(by_june_1[ward], {str(d): 1 for d in range(days_to_june_1)})
        for d in range(days_to_june_1):
            report(ward, START + timedelta(days=d), per_day[str(d)], d)
        rest = target - by_june_1[ward]
        if ward in early:
            report(ward, datetime(2023, 6, 3, tzinfo=TZ), rest, 100)
        else:
            # the rest over 2 - 14 Jun; the very last one at 23:59 on 14 Jun
            per_day = spread(rest, {str(d): 1 for d in range(13)})
            for d in range(13):
                report(
                    ward,
                    datetime(2023, 6, 2, tzinfo=TZ) + timedelta(days=d),
                    per_day[str(d)],
                    200 + d,
                )
    last = max((e for e in events if e["unit"] not in early), key=lambda e: str(e["occurred_at"]))
    last["occurred_at"] = datetime(2023, 6, 14, 23, 59, tzinfo=TZ).isoformat()
    return events


@pytest.mark.slow
async def test_hanoi_2023_figures_are_reproduced(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    wards = hanoi_wards()
    targets = {u: t for (u, i), t in ward_targets(wards).items() if i == "cccd_collected"}
    assert len(targets) == 579
    assert sum(targets.values()) == 134_329
    conn = await asyncpg.connect(database)
    async with conn.transaction():
        await admin.upsert_units(conn, hanoi_units(), "test")
        await admin.upsert_campaign(
            conn,
            "ml01-2023",
            CampaignIn(
                name="Mệnh lệnh 01",
                starts_at=START,
                deadline=DEADLINE,
                indicators=["cccd_collected"],
            ),
            "test",
        )
        await admin.upsert_targets(
            conn,
            "ml01-2023",
            [TargetIn(unit=u, indicator="cccd_collected", target=t) for u, t in targets.items()],
            "test",
        )
    await conn.close()
    token = await issue_token(database)
    events = campaign_events(targets, random.Random(2023))

    # a replay of a 2023 campaign: ingest must accept events older than its default horizon
    common: ServiceKwargs = {
        "database_url": database,
        "kafka_bootstrap": kafka.bootstrap,
        **topics.kwargs(),
    }
    async with (
        running(create_ingest(IngestSettings(**common, past_horizon_days=3650))) as ingest,
        running(
            create_aggregator(AggregatorSettings(**common, group_id=f"agg-{topics.events}"))
        ) as aggregator,
    ):
        aggregator.headers.update(READER)
        await until_ready(ingest)
        for i in range(0, len(events), 1000):
            r = await ingest.post(
                "/v1/events",
                json={"events": events[i : i + 1000]},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 202, r.text

        async def city(as_of: datetime | None = None) -> dict[str, Any]:
            params = {"as_of": as_of.isoformat()} if as_of else {}
            r = await aggregator.get("/v1/campaigns/ml01-2023/progress/01", params=params)
            assert r.status_code == 200, r.text
            figures: dict[str, Any] = r.json()["indicators"][0]
            return figures

        async def all_counted() -> None:
            assert (await city())["value"] == 134_329

        await eventually(all_counted, timeout=180)

        june_1 = await city(JUNE_1_END)
        assert june_1["value"] == ON_JUNE_1
        assert june_1["target"] == 134_329
        assert round(june_1["pct"], 1) == 58.1
        assert june_1["children_total"] == 30
        # 23 of 52 days: the linear plan expected 44.2 %, so the city was ahead of plan
        assert june_1["status"] == "on_track"
        assert june_1["pace"] > 1

        board = (
            await aggregator.get(
                "/v1/campaigns/ml01-2023/leaderboard",
                params={
                    "level": 3,
                    "indicator": "cccd_collected",
                    "as_of": JUNE_3_END.isoformat(),
                    "limit": 1000,
                },
            )
        ).json()
        assert board["total"] == 579
        assert sum(1 for row in board["rows"] if row["status"] == "done") == DONE_BY_JUNE_3
        assert all(row["pct"] >= 100 for row in board["rows"][:DONE_BY_JUNE_3])
        assert sum(row["value"] for row in board["rows"]) == (await city(JUNE_3_END))["value"]

        assert (await city(CITY_DONE - timedelta(minutes=2)))["status"] != "done"
        at_midnight = await city(CITY_DONE)
        assert at_midnight["status"] == "done"
        assert at_midnight["value"] == 134_329
        # reproducible: the same question gives the same answer
        assert await city(JUNE_1_END) == june_1
