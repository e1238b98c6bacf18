"""Two notifier replicas rank the same briefing: each works out the bottom of the
leaderboard as of it, and they store it in turns (`briefing_sql.replace_ranks`, under a
lock). Here the other replica stores the same briefing's ranks just before this one does,
as happens when an admin change makes every replica rank again within the same second.
The second store replaces the first, and the campaign is judged: no pass leaves it out.
A pass whose ranks were read inside the figures' snapshot (one state, taken before the
other replica committed) could not see the rows it was to replace, and failed the
campaign with a unique violation on the briefing's marker row."""

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.aggregator.admin import UnitIn
from services.notifier.evaluator import Evaluator
from services.notifier.render import Renderer
from services.notifier.repository import briefings as briefing_sql
from services.notifier.settings import NotifierSettings
from tests.support.world import build_world
from tiendo.database import create_pool

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
COMMUNES = ("00004", "00008", "00025", "00031", "00037", "00040")
TREE = [
    UnitIn(code="01", name="Thành phố Hà Nội", level=1),
    *[UnitIn(code=c, name=f"Phường {c}", level=2, parent_code="01") for c in COMMUNES],
]


async def test_ranks_stored_by_another_replica_meanwhile_are_replaced(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts = datetime(2025, 7, 7, 8, 0, tzinfo=TZ)  # a Monday
    await build_world(database, starts_at=starts, units=TREE, targets=dict.fromkeys(COMMUNES, 900))
    settings = NotifierSettings(database_url=database, digest_times="")  # the 5 lowest
    at = datetime(2025, 7, 21, 8, 30, tzinfo=TZ)  # half an hour after a briefing
    pool = await create_pool(database, max_size=4)
    other = await asyncpg.connect(database)
    store = briefing_sql.replace_ranks
    stored_by_the_other: list[int] = []

    async def the_other_first(*args: Any, **kwargs: Any) -> None:
        if not stored_by_the_other:
            # the other replica, having read the same version, stores the same briefing
            await store(other, *args[1:], **kwargs)
            stored_by_the_other.append(1)
        await store(*args, **kwargs)

    monkeypatch.setattr(briefing_sql, "replace_ranks", the_other_first)
    try:
        summary = await Evaluator(settings, Renderer(), ("webhook",)).evaluate_at(pool, at)
        assert stored_by_the_other
        assert summary.failed == set()
        ranked = await other.fetch("SELECT unit FROM alerts WHERE rule = 'bottom_rank'")
        assert len(ranked) == 5
        # one ranking of the briefing: the marker and five rows per indicator, once
        markers = await other.fetchval("SELECT count(*) FROM briefing_ranks WHERE unit = ''")
        assert markers == 1
    finally:
        await other.close()
        await pool.close()
