"""The units a campaign judges are those with a positive target on the tree it reports on;
every figure that counts units counts those (`figures.is_judged`): a parent's
`children_total` and `children_done` in the progress API and the leaderboard, the per-unit
metric series and the per-level counts. A unit at 0 of 0 would pass for done: outside a
push limited to some units, a version closed by a cut-over, one of a tree not in force
yet."""

from datetime import UTC, datetime, timedelta

import asyncpg

from services.aggregator import cutover
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.progress import leaderboard, progress_of
from services.aggregator.repository import reference as reference_sql
from services.aggregator.snapshot import unit_figures
from tests.counting.test_cutover import CCCD, history, world
from tests.counting.trees import CUT
from tests.support.identities import READER
from tests.support.stack import Topics, aggregator_settings, running
from tests.support.world import build_world
from tiendo import counting
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.clock import ManualClock
from tiendo.counting import apply_events
from tiendo.event import Event, Kind
from tiendo.pace import Status

NOW = datetime.now(UTC).replace(microsecond=0)
HOUR = timedelta(hours=1)


async def children_counts(
    conn: asyncpg.Connection, campaign: Campaign, unit: str, level: int, at: datetime
) -> tuple[tuple[int, int], tuple[int, int]]:
    """A unit's (children_total, children_done) in the progress API and in its level's
    leaderboard, live at `at`."""
    row = next(
        r
        for r in await leaderboard(conn, campaign, CCCD, level, at, live=True)
        if r.unit.code == unit
    )
    codes = [c.code for c in await reference_sql.children_at(conn, unit, campaign.reports_on(at))]
    (progress,) = await progress_of(conn, campaign, unit, codes, at, live=True)
    return (row.children_total, row.children_done), (
        progress.children_total,
        progress.children_done,
    )


async def test_a_push_in_one_district_counts_and_exports_its_units_only(database: str) -> None:
    # wards 00004 and 00007 of district 001 have targets; 002 and its ward 00010 none,
    # and 00010 reports all the same
    await build_world(
        database, starts_at=NOW - timedelta(days=10), targets={"00004": 100, "00007": 100}
    )
    conn = await asyncpg.connect(database)
    try:
        await apply_events(
            conn,
            [
                Event("e1", "00004", CCCD, Kind.INCREMENT, 100, NOW - HOUR),
                Event("e2", "00010", CCCD, Kind.INCREMENT, 5, NOW - HOUR),
            ],
        )
        campaign = await board.campaign(conn, "c1")
        assert campaign is not None
        # the city: one district judged, not done; 001: one ward of two done
        assert await children_counts(conn, campaign, "01", 1, NOW) == ((1, 0), (1, 0))
        assert await children_counts(conn, campaign, "001", 2, NOW) == ((2, 1), (2, 1))

        snapshot = await unit_figures(conn, 2, NOW)
        exported = {(f.unit, f.status) for f in snapshot.units}
        assert {u for u, _ in exported} == {"01", "001"}
        (districts,) = [n for n in snapshot.levels if n.level == 2]
        done = sum(1 for f in snapshot.units if f.level == 2 and f.status is Status.DONE)
        assert (districts.units, districts.done) == (1, done) == (1, 0)
        # the unit board's children column, from the stored figures, says the same
        stored = await conn.fetchrow(
            "SELECT count(*) AS total, count(*) FILTER (WHERE status = 'done') AS done"
            " FROM board_figures WHERE campaign_id = 'c1' AND parent_code = '001'"
            " AND indicator = $1",
            CCCD,
        )
        assert stored is not None
        assert (stored["total"], stored["done"]) == (2, 1)
    finally:
        await conn.close()


async def test_a_unit_without_a_target_shows_no_status_in_its_drill_down(database: str) -> None:
    # the same push: district 002 and its ward 00010 have no target, 00010 reports
    await build_world(
        database, starts_at=NOW - timedelta(days=10), targets={"00004": 100, "00007": 100}
    )
    conn = await asyncpg.connect(database)
    try:
        await apply_events(
            conn,
            [
                Event("e1", "00004", CCCD, Kind.INCREMENT, 100, NOW - HOUR),
                Event("e2", "00010", CCCD, Kind.INCREMENT, 5, NOW - 30 * HOUR),
            ],
        )
    finally:
        await conn.close()
    settings = aggregator_settings(database, "127.0.0.1:1", Topics.unique(), consume=False)
    async with running(create_aggregator(settings, clock=ManualClock(NOW))) as api:
        api.headers.update(READER)

        async def figures(unit: str, **params: str) -> dict[str, object]:
            r = await api.get(f"/v1/campaigns/c1/progress/{unit}", params=params)
            assert r.status_code == 200, r.text
            (indicator,) = r.json()["indicators"]
            assert isinstance(indicator, dict)
            return indicator

        for read in ({}, {"as_of": NOW.isoformat()}):
            # 0 of 0 was `done`: the chief was told 002 reached a target it never had
            for unit, value in (("002", 5), ("00010", 5)):
                shown = await figures(unit, **read)
                assert (shown["value"], shown["target"]) == (value, 0), read
                assert shown["run_rate_7d"] is not None  # its reports are shown all the same
                not_judged = {k: shown[k] for k in ("status", "pct", "expected", "pace")}
                assert not_judged == dict.fromkeys(not_judged), (unit, read, shown)
                assert shown["expected_pct"] is shown["required_daily_rate"] is None
                assert shown["projected_completion"] is None
            assert (await figures("00004", **read))["status"] == "done"
            city = await figures("01", **read)
            assert city["status"] is not None
            assert city["expected"] is not None
            assert (city["children_total"], city["children_done"]) == (1, 0)
        # the leaderboard ranks the judged district alone, as before
        r = await api.get("/v1/campaigns/c1/leaderboard", params={"level": 2, "indicator": CCCD})
        assert [row["unit"]["code"] for row in r.json()["rows"]] == ["001"]


async def _cutover_world(dsn: str, planned_at: datetime | None = None) -> asyncpg.Connection:
    conn = await world(dsn)
    if planned_at is not None:
        async with conn.transaction():
            await cutover.after_tree_change(conn, now=planned_at)
    return conn


async def test_after_a_cutover_the_closed_districts_are_no_children(database: str) -> None:
    conn = await _cutover_world(database)
    try:
        await counting.apply_events(conn, history())
        campaign = await board.campaign(conn, "c1")
        assert campaign is not None
        leaderboard_says, progress_says = await children_counts(
            conn, campaign, "01", 1, CUT + 5 * HOUR
        )
        assert leaderboard_says == progress_says
        assert leaderboard_says[0] == len(
            await reference_sql.children_at(conn, "01", campaign.reports_on(CUT + 5 * HOUR))
        )
    finally:
        await conn.close()


async def test_before_a_cutover_the_communes_to_come_are_no_children(database: str) -> None:
    # the new tree loaded a day ahead: its communes exist, not yet in force
    conn = await _cutover_world(database, planned_at=CUT - 24 * HOUR)
    try:
        await counting.apply_events(conn, [e for e in history() if e.occurred_at < CUT])
        campaign = await board.campaign(conn, "c1")
        assert campaign is not None
        at = CUT - 10 * HOUR
        leaderboard_says, progress_says = await children_counts(conn, campaign, "01", 1, at)
        districts = await reference_sql.children_at(conn, "01", campaign.reports_on(at))
        assert leaderboard_says == progress_says
        assert leaderboard_says[0] == len(districts)
    finally:
        await conn.close()
