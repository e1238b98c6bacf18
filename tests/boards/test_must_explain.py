"""The leaderboard board's "Phải giải trình" calls the units the notifier calls: the bottom N
of the ranking as `tiendo.board.figures.bottom` takes them (a unit that reached its target
is never a laggard, however low it ranks) and every unit behind or silent, as the briefing
does. The board states `bottom` in SQL over the stored figures (`scripts/boards/kit.py`,
`BOTTOM`); this holds the provisioned board's SQL equal to the Python on rankings drawn to
separate them: units at exactly 100 %, above it, one short of it, one short of a target too
large for a float to tell (pct 100.0, value below the target), a level nearly or wholly
done, N from 0 to past the number of units."""

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.aggregator.snapshot import store_board_figures
from services.notifier.briefing.model import MUST_EXPLAIN
from tests.boards.grafana import interpolate, panel_query
from tests.support.world import build_world
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.board.figures import Verdict, bottom, judge_many, ranked
from tiendo.board.repository import Counter
from tiendo.counting import ValueAt

START = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
AT = START + timedelta(days=20)  # of 50: the plan expects 40 % of each target
CCCD = "cccd_collected"
BOARD = "tiendo-leaderboard"
FLAGGED = "Phải giải trình"

# 10**17 - 1 is no float: 100.0 * (10**17 - 1) / 10**17 is 100.0, one short of the target
HUGE = 10**17
TARGETS = st.one_of(st.integers(1, 3000), st.sampled_from([1, 3, 2**53 + 2, HUGE]))


@st.composite
def unit(draw: st.DrawFn) -> tuple[int, int, float | None]:
    """(target, value, hours since the last report; None: never reported)."""
    target = draw(TARGETS)
    value = draw(
        st.one_of(
            st.sampled_from([target, target - 1, target + 1, 0]),
            st.integers(0, target + target // 2),
        )
    )
    reported = draw(st.one_of(st.none(), st.floats(0.5, 48.0)))
    return target, value, reported


def verdicts_of(campaign: Campaign, units: list[tuple[int, int, float | None]]) -> list[Verdict]:
    counters = [
        Counter("c1", f"w{i:03d}", f"Phường {i}", 3, "001", CCCD, value, 0, target, None, None)
        for i, (target, value, _) in enumerate(units)
    ]
    values = {
        c.unit: ValueAt(c.value, AT - timedelta(hours=h) if h is not None else None)
        for c, (_, _, h) in zip(counters, units, strict=True)
    }
    # half of each value came in the last week: some project in time, some do not
    ago = {c.unit: c.value // 2 for c in counters}
    return list(judge_many(campaign, counters, values, ago, AT).values())


def in_python(verdicts: list[Verdict], n: int) -> set[str]:
    ranking = ranked(verdicts)
    return {v.unit for _, v in bottom(ranking, n)} | {
        v.unit for v in ranking if v.progress.status in MUST_EXPLAIN
    }


async def on_the_board(conn: asyncpg.Connection, n: int) -> tuple[set[str], int]:
    """The units the ranking table flags, and the count the stat panel shows."""
    values = {"campaign": "c1", "level": "3", "indicator": CCCD, "explain": str(n)}

    def sql(title: str) -> str:
        return interpolate(panel_query(BOARD, title), sql=True, start=AT, end=AT, values=values)

    rows = await conn.fetch(sql("Xếp hạng đơn vị"))
    counted: int = await conn.fetchval(sql(FLAGGED))
    return {r["code"] for r in rows if r["must_explain"] == FLAGGED}, counted


@pytest.fixture
async def campaign(database: str) -> Campaign:
    await build_world(database, starts_at=START)
    conn = await asyncpg.connect(database)
    try:
        found = await board.campaign(conn, "c1")
    finally:
        await conn.close()
    assert found is not None
    return found


@settings(
    max_examples=60,
    deadline=None,
    # one database for every example: each replaces the stored figures whole
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(units=st.lists(unit(), min_size=1, max_size=12))
# a ward done at exactly 100 %, one above, one short, a target no float tells from the
# value one short of it, one that never reported
@example(
    units=[
        (1000, 1000, 1.0),
        (1000, 1500, 1.0),
        (1000, 999, 1.0),
        (HUGE, HUGE - 1, 1.0),
        (1000, 0, None),
    ]
)
# every unit done
@example(units=[(10, 10, 2.0), (10, 12, 2.0), (7, 9, 2.0)])
def test_must_explain_on_the_board_is_the_notifiers_bottom_and_laggards(
    database: str, campaign: Campaign, units: list[tuple[int, int, float | None]]
) -> None:
    verdicts = verdicts_of(campaign, units)

    async def check() -> None:
        conn = await asyncpg.connect(database)
        try:
            await store_board_figures(conn, verdicts, AT)
            for n in range(len(units) + 2):
                flagged, counted = await on_the_board(conn, n)
                expected = in_python(verdicts, n)
                assert flagged == expected, (n, units)
                assert counted == len(expected), (n, units)
        finally:
            await conn.close()

    asyncio.run(check())
