"""Live boards read maintained state only (issue 15): the day rollups kept by the apply equal
the event history at every local midnight, the recount of an admin change computes the same
rows, and the live reads (progress at every level, the leaderboard with its movement and
days behind, every key of a campaign) never touch the `events` table."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.aggregator import admin
from services.aggregator.admin import TargetIn
from services.aggregator.progress import leaderboard, progress_of
from tests.support.world import TREE, build_world
from tiendo import counting
from tiendo.board import days
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.board.figures import judge_campaign
from tiendo.board.movement import week_before
from tiendo.counting import as_of_days, rollups
from tiendo.event import Event, Kind

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)  # 10:00 local
NOW = STARTS + timedelta(days=9, hours=5)
CCCD, EID = "cccd_collected", "eid_activated_l2"
UNITS = [u.code for u in TREE]


def _at(day: int, hour: float) -> datetime:
    """Local `hour` o'clock of the campaign's `day` (0: its first local day)."""
    midnight = datetime.combine(STARTS.astimezone(ZONE).date(), datetime.min.time(), ZONE)
    return midnight + timedelta(days=day, hours=hour)


def _e(
    n: int,
    unit: str,
    at: datetime,
    value: int = 1,
    *,
    kind: Kind = Kind.INCREMENT,
    indicator: str = CCCD,
    subject: str | None = None,
) -> Event:
    return Event(f"r{n}", unit, indicator, kind, value, at, subject)


def history() -> list[Event]:
    """Nine days in time order: increments and snapshots of wards, a district's own
    reports, two snapshots of one ward on one day with increments between them and one
    at a snapshot's very moment, a citizen counted once, events before the start; and a
    citizen's earlier event arriving last, which moves its count to another unit and day
    (increments arrive in any order: only a snapshot's keys need time order)."""
    return [
        _e(1, "00004", STARTS - timedelta(hours=1), 50),  # before the start: never counts
        _e(2, "00004", _at(0, 11), 3),
        _e(3, "00007", _at(0, 12), 5),
        _e(4, "001", _at(0, 15), 2),
        _e(5, "00010", _at(1, 8), 4, indicator=EID, subject="a" * 64),
        _e(6, "00004", _at(1, 9), 40, kind=Kind.SNAPSHOT),
        _e(7, "00004", _at(1, 10), 2),
        _e(8, "00007", _at(2, 9), 7),
        _e(9, "00007", _at(2, 10), 1, indicator=EID, subject="a" * 64),  # the same citizen
        _e(10, "00004", _at(3, 8), 60, kind=Kind.SNAPSHOT),
        _e(11, "00004", _at(3, 9), 5),
        _e(12, "00004", _at(3, 11), 70, kind=Kind.SNAPSHOT),
        _e(13, "00004", _at(3, 11), 9),  # at the snapshot's moment: covered by it
        _e(14, "00004", _at(3, 12), 1),
        _e(15, "002", _at(4, 9), 30, kind=Kind.SNAPSHOT),
        _e(16, "00010", _at(5, 14), 6),
        _e(17, "00007", _at(6, 9), 100, kind=Kind.SNAPSHOT),
        _e(18, "00007", _at(7, 20), 3),
        _e(19, "00010", _at(8, 7), 2, indicator=EID),
        _e(20, "00004", _at(9, 1), 4),
        _e(21, "00010", _at(6, 10), indicator=EID, subject="c" * 64),
        _e(22, "00004", _at(9, 2), 1),
        _e(23, "00010", _at(9, 3), 1),
        # the same citizen's earlier event, last to arrive: the count moves to its day
        _e(24, "00007", _at(3, 15), indicator=EID, subject="c" * 64),
    ]


async def _campaign_world(database: str) -> None:
    await build_world(database, starts_at=STARTS, days=50, indicators=(CCCD, EID))
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            # a baseline of its own, which no snapshot covers
            await admin.upsert_targets(
                conn, "c1", [TargetIn(unit="00007", indicator=CCCD, target=1000, baseline=25)], "t"
            )
    finally:
        await conn.close()


async def _applied_live(conn: asyncpg.Connection, events: list[Event]) -> Campaign:
    """`events` applied in time order, in batches of a few (the way reports arrive live);
    their campaign."""
    for first in range(0, len(events), 3):
        await counting.apply_events(conn, events[first : first + 3])
    campaign = await board.campaign(conn, "c1")
    assert campaign is not None
    return campaign


async def _rows(conn: asyncpg.Connection) -> set[tuple[object, ...]]:
    return {
        tuple(tuple(v) if isinstance(v, list) else v for v in r)
        for r in await conn.fetch(
            "SELECT unit, indicator, day, change, increments, events, hours FROM subtree_days"
            " WHERE campaign_id = 'c1' AND (change <> 0 OR increments <> 0 OR events <> 0"
            "  OR 0 <> ANY (hours))"
        )
    }


async def test_day_rollups_equal_the_history_at_every_midnight(database: str) -> None:
    await _campaign_world(database)
    events = history()
    conn = await asyncpg.connect(database)
    try:
        campaign = await _applied_live(conn, events)
        for indicator in (CCCD, EID):
            live = {c.unit: c.value for c in await board.counters_of(conn, "c1", indicator, UNITS)}
            for day in range(11):
                midnight = _at(day, 0)
                rolled = await days.values_at(conn, campaign, {indicator: live}, midnight)
                found = await counting.as_of_history(
                    conn, "c1", [indicator], UNITS, campaign.starts_at, midnight
                )
                history_values = {u: found[indicator, u].value for u in UNITS}
                assert rolled[indicator] == history_values, (indicator, day)

        # an admin change recounts them from the history: the same rows
        applied = await _rows(conn)
        assert applied
        async with conn.transaction():
            await rollups.recount_days(conn, "c1")
            assert await _rows(conn) == applied
    finally:
        await conn.close()


# A first-levels unit's value at the start of hour `$4` of day `$3`, from the rollups alone:
# live less the later days' changes and the hours of that day from `$4` on.
VALUE_AT_HOUR = """
SELECT p.value
       - coalesce((SELECT sum(d.change) FROM subtree_days d
                   WHERE d.campaign_id = p.campaign_id AND d.unit = p.unit
                     AND d.indicator = p.indicator AND d.day > $3), 0)
       - coalesce((SELECT sum(h) FROM subtree_days d, unnest(d.hours[$4 + 1:]) AS h
                   WHERE d.campaign_id = p.campaign_id AND d.unit = p.unit
                     AND d.indicator = p.indicator AND d.day = $3), 0)
FROM progress p
WHERE p.campaign_id = 'c1' AND p.unit = $1 AND p.indicator = $2
"""


async def test_the_first_levels_hours_equal_the_history_at_every_hour(database: str) -> None:
    """The country's and its provinces' days (here the city's and its districts') keep the
    change of each of their hours: their value at every hour's start, from the rollups,
    is the history's, after the live apply and after a recount. Deeper units keep none.
    The events fall inside hours and on their starts, snapshots among increments, one
    within the hour of another, a citizen's earlier event arriving last; and another's
    earlier event of the same day in a ward of the same district, arriving last, which
    moves the city's and the district's hours but not their day."""
    await _campaign_world(database)
    events = [
        *history(),
        _e(30, "00004", _at(3, 11.5), 2),
        _e(31, "00007", _at(3, 11.25), 80, kind=Kind.SNAPSHOT),
        _e(32, "00007", _at(3, 11.75), 4),
        _e(33, "00010", _at(3, 23.99), 9),
        _e(34, "00004", _at(4, 16), indicator=EID, subject="d" * 64),
    ]
    events.sort(key=lambda e: e.occurred_at)
    events.append(_e(35, "00007", _at(4, 9.5), indicator=EID, subject="d" * 64))
    top = ["01", "001", "002"]
    conn = await asyncpg.connect(database)
    try:
        campaign = await _applied_live(conn, events)

        async def hold() -> None:
            for day in range(10):
                date = _at(day, 0).date()
                for hour in range(24):
                    at = _at(day, hour) - timedelta(microseconds=1)
                    found = await counting.as_of_history(
                        conn, "c1", [CCCD, EID], top, campaign.starts_at, at
                    )
                    for (indicator, unit), value in found.items():
                        rolled = await conn.fetchval(VALUE_AT_HOUR, unit, indicator, date, hour)
                        assert (rolled or 0) == value.value, (unit, indicator, day, hour)

        await hold()
        assert not await conn.fetchval(
            "SELECT count(*) FROM subtree_days WHERE hours IS NOT NULL AND unit <> ALL ($1)", top
        )
        async with conn.transaction():
            await rollups.recount_days(conn, "c1")
        await hold()
    finally:
        await conn.close()


async def test_a_recount_writes_the_rollups_day_by_day_each_indicator_in_turn(
    database: str,
) -> None:
    """A leaderboard reads one indicator's week of rows: the recount of every re-plan lays
    them out day by day, each day's indicators in turn (as the live apply adds a day's rows
    on that day), not in its groups' order (which put a week of one indicator's rows on
    nearly every page of the table)."""
    await _campaign_world(database)
    conn = await asyncpg.connect(database)
    try:
        await counting.apply_events(conn, history())
        async with conn.transaction():
            await rollups.recount_days(conn, "c1")
        query = "SELECT day, indicator, unit FROM subtree_days WHERE campaign_id = 'c1' ORDER BY "
        stored = [tuple(r) for r in await conn.fetch(query + "ctid")]
        assert len({day for day, _, _ in stored}) > 5
        assert stored == [tuple(r) for r in await conn.fetch(query + "day, indicator, unit")]
    finally:
        await conn.close()


async def test_live_reads_never_read_the_event_history(database: str) -> None:
    await _campaign_world(database)
    reader = await asyncpg.connect(database)
    locker = await asyncpg.connect(database)
    try:
        await counting.apply_events(reader, history())
        campaign = await board.campaign(reader, "c1")
        assert campaign is not None
        # Whoever reads `events` now waits for this lock and gives up after a second.
        await reader.execute("SET lock_timeout = '1s'")
        async with locker.transaction():
            await locker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            for unit, children in (("01", ["001", "002"]), ("001", ["00004", "00007"])):
                figures = await progress_of(reader, campaign, unit, children, NOW, live=True)
                assert {f.indicator for f in figures} == {CCCD, EID}
                assert all(f.run_rate_7d is not None for f in figures)
            # movement since the default `previous`, a day's end: from the rollups (one
            # named inside a day is read from the history, as `as_of` reads it)
            rows = await leaderboard(
                reader, campaign, CCCD, 3, NOW, live=True, previous_at=week_before(campaign, NOW)
            )
            assert {r.unit.code for r in rows} == {"00004", "00007", "00010"}
            assert all(r.previous_rank for r in rows)
            assert await judge_campaign(reader, campaign, NOW, live=True)
            # the lock does hold history reads off: an `as_of` read waits for it
            with pytest.raises(asyncpg.LockNotAvailableError):
                await progress_of(reader, campaign, "01", ["001"], NOW, live=False)
    finally:
        await locker.close()
        await reader.close()


async def test_as_of_from_the_rollups_and_one_day_of_events_equals_the_history(
    database: str,
) -> None:
    await _campaign_world(database)
    conn = await asyncpg.connect(database)
    try:
        events = history()
        campaign = await _applied_live(conn, events)
        indicators = [CCCD, EID]
        # every seven hours from before the start to after the last event: midnights,
        # moments inside days with snapshots, days some units were silent
        for step in range(40):
            at = STARTS - timedelta(hours=5) + timedelta(hours=7 * step)
            found = await counting.as_of_history(
                conn, "c1", indicators, UNITS, campaign.starts_at, at
            )
            history_figures = {k: (v.value, v.last_event_at) for k, v in found.items()}
            rolled = await as_of_days.read(conn, "c1", indicators, UNITS, campaign.starts_at, at)
            assert rolled is not None
            assert not rolled.inexact
            assert rolled.figures == history_figures, at
    finally:
        await conn.close()
