"""The pack's chart draws a unit red exactly when the ranking beside it marks it (behind or
stale, as judged against the campaign's own `behind_threshold`), green otherwise. Until 7
December 2026 the chart restated a threshold of its own (0.9 of the plan): under a
campaign's 0.8 a district at pace 0.85, on track in the ranking, was drawn red; under 0.95
one at pace 0.92, behind in the ranking, was drawn green."""

import io
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import numpy as np
import pytest
from PIL import Image

from services.aggregator import admin
from services.aggregator.admin import CampaignIn
from services.notifier.briefing.chart import BEHIND_COLOUR, DONE_COLOUR, progress_chart
from services.notifier.briefing.gather import gather
from services.notifier.briefing.words import WORDS
from tests.support.notifier import Feed, progress
from tests.support.world import build_world
from tiendo.board import repository as board

STARTS = datetime(2023, 5, 10, 3, tzinfo=UTC)
AT = STARTS + timedelta(days=10)  # a fifth of the 50 days: the plan is at 200 of 1,000


def _drawn(png: bytes) -> str:
    """The colour of the unit's line in a chart of it alone."""
    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    def pixels(colour: str) -> int:
        rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        return int((a == rgb).all(axis=-1).sum())

    red, green = pixels(BEHIND_COLOUR), pixels(DONE_COLOUR)
    if red > 100 and not green:
        return "red"
    if green > 100 and not red:
        return "green"
    return f"{red} red and {green} green pixels"


@pytest.mark.parametrize(
    ("threshold", "wards", "red"),
    [
        # 001 at 340 of a planned 400 (pace 0.85), 002 at 150 of 200 (0.75), the city 0.82
        (0.8, {"00004": 170, "00007": 170, "00010": 150}, {"002"}),
        # 001 at 368 of 400 (0.92), 002 at 196 of 200 (0.98), the city 0.94
        (0.95, {"00004": 184, "00007": 184, "00010": 196}, {"01", "001"}),
    ],
)
async def test_the_chart_colours_each_unit_as_the_ranking_judges_it(
    database: str, threshold: float, wards: dict[str, int], red: set[str]
) -> None:
    await build_world(database, starts_at=STARTS)
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            campaign_in = CampaignIn(
                name="test campaign",
                starts_at=STARTS,
                deadline=STARTS + timedelta(days=50),
                indicators=["cccd_collected"],
                behind_threshold=threshold,
            )
            await admin.upsert_campaign(conn, "c1", campaign_in, "test")
        await Feed(database).send(
            *(progress(u, v, at=AT - timedelta(hours=1)) for u, v in wards.items())
        )
        campaign = await board.campaign(conn, "c1")
        assert campaign is not None
        pack = await gather(
            conn,
            campaign,
            level=2,
            at=AT,
            previous_at=AT - timedelta(days=7),
            language="vi",
            bottom_n=0,
        )
    finally:
        await conn.close()
    (section,) = pack.sections
    ranked_red = {r.unit for r in section.ranking if r.progress.status.value in ("behind", "stale")}
    assert ranked_red == red - {"01"}  # the ranking of level 2: the districts
    drawn = {s.unit: _drawn(progress_chart([s], WORDS["vi"], "vi")) for s in section.series}
    assert drawn == {u: "red" if u in red else "green" for u in ("01", "001", "002")}


async def test_each_point_of_the_chart_sits_at_the_moment_it_was_read(database: str) -> None:
    """The ends of the campaign's local days, then the pack's own moment (here 10:00 local,
    ten days in), each at its own time: as dates the last point sat on the midnight
    before it, beside that midnight's value, and the line ended in a vertical jump."""
    await build_world(database, starts_at=STARTS)
    conn = await asyncpg.connect(database)
    try:
        await Feed(database).send(progress("00004", 120, at=AT - timedelta(hours=1)))
        campaign = await board.campaign(conn, "c1")
        assert campaign is not None
        pack = await gather(
            conn,
            campaign,
            level=2,
            at=AT,
            previous_at=AT - timedelta(days=7),
            language="vi",
            bottom_n=0,
        )
    finally:
        await conn.close()
    (section,) = pack.sections
    zone = ZoneInfo(campaign.timezone)
    for s in section.series:
        local = [m.replace(tzinfo=zone) for m in s.moments]
        assert local == sorted(set(local))
        *midnights, last = local
        assert all(m.time() == time(0) for m in midnights)
        assert midnights[0].date() == STARTS.astimezone(zone).date() + timedelta(days=1)
        assert last == AT.astimezone(zone)
        assert s.values[-1] == {"01": 120, "001": 120, "002": 0}[s.unit]
