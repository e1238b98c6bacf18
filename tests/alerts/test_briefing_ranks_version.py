"""A briefing's bottom ranks are stored once per version of the history they are read from
(`briefing_sql.history_version`), and worked out again when it changes. A citizen's earlier
event arriving late moves the citizen's count from one ward to another: one ward's day
loses a counted event and another's gains one, so the counted events of the days up to the
briefing sum to what they were, while the ranking has moved. The version counts the
transactions that changed the rollups up to the briefing's day (`history_reach`), which
only grow."""

from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg

from services.notifier.evaluator import Evaluator
from services.notifier.render import Renderer
from services.notifier.settings import NotifierSettings
from tests.support.world import build_world
from tiendo.counting import apply_events
from tiendo.database import create_pool
from tiendo.event import Event, Kind

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
C = "cccd_collected"
A, B = "00004", "00007"
CITIZEN = "ab" * 32


def _at(day: int, hour: int) -> datetime:
    return datetime(2023, 5, day, hour, 0, tzinfo=TZ)


def _plain(n: int, unit: str, day: int) -> Event:
    return Event(f"p-{unit}-{n}", unit, C, Kind.INCREMENT, 1, _at(day, 9 + n))


async def _bottom(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("SELECT unit FROM briefing_ranks WHERE unit <> '' ORDER BY rank")
    return [r["unit"] for r in rows]


async def test_a_citizen_moving_between_wards_ranks_the_briefing_again(database: str) -> None:
    # a Monday; the briefing a week later, Monday 15 May 08:00
    await build_world(database, starts_at=_at(8, 8), targets={A: 10, B: 10})
    settings = NotifierSettings(
        database_url=database, digest_times="", bottom_rank_n=1, bottom_rank_level=3
    )
    pool = await create_pool(database, max_size=4)
    conn = await asyncpg.connect(database)
    try:
        await apply_events(
            conn,
            [
                *(_plain(n, A, 12) for n in range(4)),
                *(_plain(n, B, 11) for n in range(4)),
                # the citizen, counted in A on Saturday: A 5 of 10, B 4 of 10
                Event("x-in-a", A, C, Kind.INCREMENT, 1, _at(13, 10), CITIZEN),
            ],
        )
        evaluator = Evaluator(settings, Renderer(), ("webhook",))
        await evaluator.evaluate_at(pool, _at(15, 8).replace(minute=30))
        assert await _bottom(conn) == [B]

        # the same citizen in B on Friday, reported late: the citizen counts there now
        await apply_events(conn, [Event("x-in-b", B, C, Kind.INCREMENT, 1, _at(12, 10), CITIZEN)])
        values = {
            r["unit"]: r["value"]
            for r in await conn.fetch(
                "SELECT unit, value FROM progress WHERE unit = ANY ($1)", [A, B]
            )
        }
        assert values == {A: 4, B: 5}
        await evaluator.evaluate_at(pool, _at(15, 8).replace(minute=40))
        assert await _bottom(conn) == [A]
    finally:
        await conn.close()
        await pool.close()
