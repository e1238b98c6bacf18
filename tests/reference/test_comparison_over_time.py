"""This campaign against Mệnh lệnh 01 (2023) at the same day of each, on today's 126
communes (docs/units-over-time.md, "Comparisons over time"), with Hà Nội's real trees and
crosswalks: 2023's ward figures are carried through 1 January 2025 (53 merges) and 1 July
2025 (126 communes). The expected figures are computed here from the crosswalk files, by a
different road than the database's: a ward whose every step is `whole` lands in exactly one
commune; a ward split on 1 July without declared shares stays with the city, unallocated.
Nothing dropped, nothing doubled."""

import csv
import random
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from devtools.demo import seed
from devtools.localstack import KafkaBroker
from services.aggregator import admin
from services.aggregator.admin import CampaignIn, TargetIn
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.cli import import_file, import_tree_version
from services.aggregator.comparison import store_comparisons
from tests.support.identities import ADMIN_SECRET as ADMIN
from tests.support.identities import READER
from tests.support.stack import Topics, aggregator_settings, running
from tiendo import counting
from tiendo.board.isolation import CampaignIsolation
from tiendo.event import Event, Kind

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DATA = Path(str(resources.files("devtools.demo") / "data"))
OLD_START = datetime(2023, 5, 10, tzinfo=TZ)
NEW_START = datetime(2026, 11, 10, tzinfo=TZ)
DAY = 12


def _rows(name: str) -> list[dict[str, str]]:
    return list(csv.DictReader((DATA / name).read_text(encoding="utf-8").splitlines()))


def whole_destination() -> dict[str, str | None]:
    """Each 2023 ward's 2025 commune (official code) when every step of its chain is
    whole; None when it was split on 1 July."""
    january = {r["old_code"]: r["new_code"] for r in _rows("hanoi_crosswalk_2025-01_inferred.csv")}
    july: dict[str, list[tuple[str, str]]] = {}
    for r in _rows("hanoi_crosswalk_2025.csv"):
        july.setdefault(r["old_code"], []).append((r["new_code"], r["transfer"]))
    out: dict[str, str | None] = {}
    for w in seed.hanoi_wards():
        code = january.get(w.code, w.code)
        [*steps] = july[code]
        out[w.code] = steps[0][0] if [t for _, t in steps] == ["whole"] else None
    return out


@pytest.fixture
async def aggregator(
    database: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    async with running(create_aggregator(settings)) as c:
        yield c


def _event(event_id: str, unit: str, value: int, at: datetime) -> Event:
    return Event(
        event_id=event_id,
        unit=unit,
        indicator="cccd_collected",
        kind=Kind.INCREMENT,
        value=value,
        occurred_at=at,
    )


async def test_a_campaign_is_compared_with_2023_on_todays_communes(
    database: str, aggregator: httpx.AsyncClient
) -> None:
    admin_auth = {"Authorization": f"Bearer {ADMIN}"}
    aggregator.headers.update(admin_auth)
    assert await import_file(aggregator, "units", DATA / "hanoi_units.csv", None, ADMIN) == []
    for day, units, crosswalk in (
        (date(2025, 1, 1), "hanoi_units_2025-01.csv", "hanoi_crosswalk_2025-01_inferred.csv"),
        (date(2025, 7, 1), "hanoi_units_2025.csv", "hanoi_crosswalk_2025.csv"),
    ):
        problems = await import_tree_version(
            aggregator, DATA / units, DATA / crosswalk, day, 90, ADMIN
        )
        assert problems == []

    rng = random.Random(13)
    wards = seed.hanoi_wards()
    communes = seed.hanoi_communes()
    conn = await asyncpg.connect(database)
    try:
        new_keys = {
            r["admin_code"]: r["code"]
            for r in await conn.fetch(
                "SELECT code, admin_code FROM units WHERE valid_to IS NULL AND level = 2"
            )
        }
        assert len(new_keys) == 126
        # targets by official code, each read on the tree at its campaign's start
        plans: list[tuple[str, datetime, list[str]]] = [
            ("ml01-2023", OLD_START, [w.code for w in wards]),
            ("ml01-2026", NEW_START, [c.code for c in communes]),
        ]
        async with conn.transaction():
            for cid, start, codes in plans:
                campaign = CampaignIn(
                    name=cid,
                    starts_at=start,
                    deadline=start + timedelta(days=51),
                    indicators=["cccd_collected"],
                )
                await admin.upsert_campaign(conn, cid, campaign, "test")
                await admin.upsert_targets(
                    conn,
                    cid,
                    [TargetIn(unit=u, indicator="cccd_collected", target=500) for u in codes],
                    "test",
                )
        # 2023: each ward reports on random days, some after day 12 (not compared)
        by_ward_until_day: dict[str, int] = {}
        old_events = []
        for w in wards:
            for n in range(rng.randrange(0, 4)):
                d = rng.randrange(0, 20)
                value = rng.randrange(1, 40)
                at = OLD_START + timedelta(days=d, hours=rng.randrange(7, 20))
                old_events.append(_event(f"old-{w.code}-{n}", w.code, value, at))
                if at <= OLD_START + timedelta(days=DAY):
                    by_ward_until_day[w.code] = by_ward_until_day.get(w.code, 0) + value
        # this year: communes report by their official codes (00004 is Phường Ba Đình now)
        by_commune: dict[str, int] = {}
        new_events = []
        for c in communes:
            value = rng.randrange(0, 60)
            if value:
                at = NEW_START + timedelta(days=rng.randrange(0, DAY), hours=9)
                new_events.append(_event(f"new-{c.code}", c.code, value, at))
                by_commune[c.code] = value
        rng.shuffle(old_events)
        for i in range(0, len(old_events), 500):
            await counting.apply_events(conn, old_events[i : i + 500])
        await counting.apply_events(conn, new_events)
        targeted = await conn.fetchval(
            "SELECT count(*) FROM targets WHERE campaign_id = 'ml01-2026' AND unit = ANY ($1)",
            list(new_keys.values()),
        )
        assert targeted == 126  # 00004 set in 2026 is Phường Ba Đình, not Trúc Bạch
    finally:
        await conn.close()

    aggregator.headers.update(READER)
    r = await aggregator.get(
        "/v1/campaigns/ml01-2026/compare/ml01-2023",
        params={"indicator": "cccd_collected", "unit": "01", "day": DAY},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["day"] == DAY
    assert datetime.fromisoformat(body["other_at"]) == OLD_START + timedelta(days=DAY)
    rows = {row["code"]: row for row in body["children"]}
    assert len(rows) == 126

    expected: dict[str, int] = {}
    unallocated = 0
    for ward, dest in whole_destination().items():
        value = by_ward_until_day.get(ward, 0)
        if dest is None:
            unallocated += value
        else:
            expected[dest] = expected.get(dest, 0) + value
    for c in communes:
        row = rows[new_keys[c.code]]
        assert row["other_value"] == expected.get(c.code, 0), c.code
        assert row["value"] == by_commune.get(c.code, 0), c.code
    assert body["unallocated"] == unallocated
    assert body["unit"]["other_value"] == sum(by_ward_until_day.values())
    assert body["unit"]["value"] == sum(by_commune.values())
    assert unallocated > 0
    assert sum(expected.values()) > 0

    # the read API names units on the tree of the moment asked about
    unit = (await aggregator.get("/v1/units/00004")).json()
    assert (unit["code"], unit["name"]) == ("00004@2025-07-01", "Phường Ba Đình")
    assert len((await aggregator.get("/v1/units/01")).json()["children"]) == 126
    now = await aggregator.get("/v1/campaigns/ml01-2026/progress/00004")
    assert now.json()["unit"]["code"] == "00004@2025-07-01"
    assert now.json()["indicators"][0]["value"] == by_commune.get("00004", 0)
    then = await aggregator.get(
        "/v1/campaigns/ml01-2023/progress/00004",
        params={"as_of": (OLD_START + timedelta(days=DAY)).isoformat()},
    )
    assert (then.json()["unit"]["code"], then.json()["unit"]["name"]) == (
        "00004",
        "Phường Trúc Bạch",
    )
    assert then.json()["indicators"][0]["value"] == by_ward_until_day.get("00004", 0)
    city_then = await aggregator.get(
        "/v1/campaigns/ml01-2023/progress/01",
        params={"as_of": (OLD_START + timedelta(days=DAY)).isoformat()},
    )
    assert city_then.json()["indicators"][0]["children_total"] == 30  # its districts

    # the boards' stored comparison is the route's, row for row
    conn = await asyncpg.connect(database)
    try:
        comparing = CampaignIsolation(work="comparison")
        written = await store_comparisons(conn, NEW_START + timedelta(days=DAY, hours=1), comparing)
        assert comparing.failing == frozenset()
        stored = {
            r["unit"]: r
            for r in await conn.fetch(
                "SELECT * FROM board_comparisons WHERE campaign_id = 'ml01-2026' AND day = $1",
                DAY,
            )
        }
    finally:
        await conn.close()
    assert written == len(stored) == 127
    assert stored["01"]["other_id"] == "ml01-2023"
    assert (stored["01"]["value"], stored["01"]["other_value"]) == (
        body["unit"]["value"],
        body["unit"]["other_value"],
    )
    assert stored["01"]["unallocated"] == body["unallocated"]
    for code, row in rows.items():
        assert (stored[code]["value"], stored[code]["other_value"]) == (
            row["value"],
            row["other_value"],
        ), code
