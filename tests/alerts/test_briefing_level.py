"""The level a briefing ranks, by default the deepest level with a target on the tree the
campaign reports on at the briefing moment: communes (level 2) on today's tree, where no
district is left and level 3 holds nobody; a campaign across the 1 July 2025 cut-over ranks
its wards before it and its communes after. One rule (`ranks.briefing_level`) for the
`bottom_rank` alerts, the briefing pack and `tiendo check`; a level set in the settings or
the policy overrides it, and a pack asked for a level without units is a 422 naming the
levels there are (docs/briefing.md, docs/alerts.md)."""

import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from openpyxl import load_workbook

from services.aggregator import cutover
from services.aggregator.admin import UnitIn
from services.check.run import check_round
from services.notifier.briefing import pack
from services.notifier.evaluator import Evaluator
from services.notifier.ranks import briefing_bottom
from services.notifier.render import Renderer
from services.notifier.settings import NotifierSettings
from tests.counting.test_cutover import world
from tests.counting.trees import CUT
from tests.support.world import build_world
from tiendo.board import repository as board
from tiendo.database import create_pool

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
COMMUNES = ("00004", "00008", "00025", "00031", "00037", "00040")
# the tree since 1 July 2025: the city, then its communes
TODAY = [
    UnitIn(code="01", name="Thành phố Hà Nội", level=1),
    *[UnitIn(code=c, name=f"Phường {c}", level=2, parent_code="01") for c in COMMUNES],
]


def _ranked(document: pack.Document) -> set[str]:
    """The codes of the pack's ranking."""
    rows = load_workbook(io.BytesIO(document.body))["Xếp hạng"].iter_rows(values_only=True)
    return {str(r[4]) for r in list(rows)[1:]}


async def test_on_todays_tree_the_communes_are_ranked_and_alerted(database: str) -> None:
    starts = datetime(2025, 7, 7, 8, 0, tzinfo=TZ)  # a Monday
    await build_world(database, starts_at=starts, units=TODAY, targets=dict.fromkeys(COMMUNES, 900))
    settings = NotifierSettings(database_url=database, digest_times="")  # 5 lowest, no level
    at = datetime(2025, 7, 21, 8, 30, tzinfo=TZ)  # half an hour after a briefing
    pool = await create_pool(database, max_size=4)
    conn = await asyncpg.connect(database)
    try:
        await Evaluator(settings, Renderer(), ("webhook",)).evaluate_at(pool, at)
        ranked = await conn.fetch("SELECT unit FROM alerts WHERE rule = 'bottom_rank'")
        assert len(ranked) == 5
        assert {r["unit"] for r in ranked} < set(COMMUNES)
        # tiendo check ranks the same level: no bottom_rank disagreement
        checked = await check_round(conn, settings, at)
        assert [d for d in checked.disagreements if d.kind == "bottom_rank"] == []

        made = await pack.briefing_pack(
            conn, settings, "c1", at=None, now=at, level=None, language=None, fmt="xlsx"
        )
        assert made.filename.endswith("-cap2.xlsx")
        assert _ranked(made) == set(COMMUNES)
        with pytest.raises(pack.Unanswered) as refused:
            await pack.briefing_pack(
                conn, settings, "c1", at=None, now=at, level=3, language=None, fmt="xlsx"
            )
        assert refused.value.field == "level"
        assert str(refused.value).endswith("levels with one then: 1, 2")
    finally:
        await conn.close()
        await pool.close()


async def test_a_campaign_across_the_cut_over_ranks_wards_before_and_communes_after(
    database: str,
) -> None:
    conn = await world(database)  # wards under districts until 1 July 2025, communes after
    try:
        async with conn.transaction():
            await cutover.after_tree_change(conn, now=CUT - timedelta(days=1))
        async with conn.transaction():
            assert await cutover.replan_passed(conn, CUT + timedelta(hours=1)) == ["c1"]
        campaign = await board.campaign(conn, "c1")
        assert campaign is not None
        before = datetime(2025, 6, 30, 8, 0, tzinfo=TZ)  # the last Monday of June
        after = datetime(2025, 7, 7, 8, 0, tzinfo=TZ)
        now = after + timedelta(hours=1)
        wards = {"00004", "00005", "00006", "00008"}
        communes = {"00004@2025-07-01", "X", "Y", "00008@2025-07-01"}
        settings = NotifierSettings(database_url="postgresql://unused", digest_times="")
        for moment, level, units in ((before, 3, wards), (after, 2, communes)):
            bottom = await briefing_bottom(conn, campaign, moment.astimezone(UTC), None, 10)
            assert {b.unit for b in bottom["cccd_collected"].lowest} == units, moment
            made = await pack.briefing_pack(
                conn, settings, "c1", at=moment, now=now, level=None, language=None, fmt="xlsx"
            )
            assert made.filename.endswith(f"-cap{level}.xlsx")
            assert _ranked(made) == units

        # a level set in the settings (or the policy) is kept: none of level 3 after the
        # cut-over, so nobody is ranked, and a pack of it is refused naming the levels
        wards_only = NotifierSettings(
            database_url="postgresql://unused", digest_times="", bottom_rank_level=3
        )
        explicit = await briefing_bottom(conn, campaign, after, 3, 10)
        assert [(b.of_units, b.lowest) for b in explicit.values()] == [(0, [])]
        with pytest.raises(pack.Unanswered) as refused:
            await pack.briefing_pack(
                conn, wards_only, "c1", at=after, now=now, level=None, language=None, fmt="xlsx"
            )
        assert "level 3 (the campaign's bottom_rank level)" in str(refused.value)
        assert str(refused.value).endswith("levels with one then: 1, 2")
    finally:
        await conn.close()
