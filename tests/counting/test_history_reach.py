"""Every transaction that writes the day rollups counts itself in `history_reach` under the
earliest local day it changed, per (campaign, indicator) (`tiendo.counting.reach`): what
tells a reader that keeps values one run-rate window ago that they moved. A batch counts
once per pair it changed, under its earliest day (a report from last week under last
week's day, today's under today's), a batch that changes nothing counts nowhere, and a
re-plan counts under every day. The notifier reads the counts through its view."""

from datetime import UTC, date, datetime, timedelta

import asyncpg

from services.aggregator import admin
from services.aggregator.admin import TargetIn
from tests.support.world import build_world
from tiendo.counting import apply_events, reach
from tiendo.event import Event, Kind

START = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)  # 10:00 on 10 May in Hà Nội
C, E = "cccd_collected", "eid_activated_l2"


def _day(n: int) -> date:
    """The campaign's local day n (0: its first)."""
    return date(2023, 5, 10) + timedelta(days=n)


def _event(event_id: str, unit: str, indicator: str, at: datetime, value: int = 1) -> Event:
    return Event(event_id, unit, indicator, Kind.INCREMENT, value, at)


async def _counted(conn: asyncpg.Connection) -> dict[tuple[str, date], int]:
    """(indicator, day) → how many transactions counted there, the days of events only."""
    rows = await conn.fetch(
        "SELECT indicator, day, writes FROM history_reach"
        " WHERE campaign_id = 'c1' AND day > '-infinity'"
    )
    return {(r["indicator"], r["day"]): r["writes"] for r in rows}


async def test_a_batch_counts_once_per_pair_under_the_earliest_day_it_changed(
    database: str,
) -> None:
    await build_world(database, starts_at=START, indicators=(C, E))
    conn = await asyncpg.connect(database)
    try:
        # today's reports, one of them a week late; the other indicator's on time
        await apply_events(
            conn,
            [
                _event("c-today", "00004", C, START + timedelta(days=9, hours=1)),
                _event("c-late", "00007", C, START + timedelta(days=2)),
                _event("c-later", "00010", C, START + timedelta(days=5)),
                _event("e-today", "00004", E, START + timedelta(days=9, hours=2)),
            ],
        )
        assert await _counted(conn) == {(C, _day(2)): 1, (E, _day(9)): 1}
        # the same batch again changes nothing, and counts nowhere; nor does a report from
        # before the campaign (it counts for no campaign)
        await apply_events(conn, [_event("c-today", "00004", C, START + timedelta(days=9))])
        await apply_events(conn, [_event("c-before", "00004", C, START - timedelta(days=1))])
        assert await _counted(conn) == {(C, _day(2)): 1, (E, _day(9)): 1}
        # the next on-time batch: under its own day, apart from the late one
        await apply_events(conn, [_event("c-next", "00004", C, START + timedelta(days=9, hours=3))])
        await apply_events(conn, [_event("c-next-2", "00007", C, START + timedelta(days=9))])
        assert await _counted(conn) == {(C, _day(2)): 1, (C, _day(9)): 2, (E, _day(9)): 1}

        # what a reader whose window starts on day 3 reads: the late batch only
        assert await reach.reached(conn, "c1", _day(3)) == {
            C: 1 + await _every_day(conn, C),
            E: await _every_day(conn, E),
        }
        assert (await reach.reached(conn, "c1", _day(9)))[C] == 3 + await _every_day(conn, C)
    finally:
        await conn.close()


async def test_a_withdrawn_winner_counts_under_its_own_day(database: str) -> None:
    """A citizen's earlier event takes the count over (rule 2): its day gains one, the day
    of the event it dethrones loses one; the earlier of the two is the batch's, and a
    withdrawn winner's day is the batch's when nothing earlier of it counts."""
    await build_world(database, starts_at=START, indicators=(C,))
    conn = await asyncpg.connect(database)
    try:
        first = Event("first", "00004", C, Kind.INCREMENT, 1, START + timedelta(days=6), "s-1")
        await apply_events(conn, [first])
        # a later event of the citizen counts for nothing, and is counted nowhere
        later = Event("later", "00007", C, Kind.INCREMENT, 1, START + timedelta(days=8), "s-1")
        await apply_events(conn, [later])
        assert await _counted(conn) == {(C, _day(6)): 1}
        earliest = Event(
            "earliest", "00010", C, Kind.INCREMENT, 1, START + timedelta(days=4), "s-1"
        )
        await apply_events(conn, [earliest])
        assert await _counted(conn) == {(C, _day(6)): 1, (C, _day(4)): 1}
        # an earliest event from before the campaign counts for none of its days: the
        # winner it withdraws is the batch's only change, on the winner's day
        winner = Event("winner", "00004", C, Kind.INCREMENT, 1, START + timedelta(days=5), "s-2")
        await apply_events(conn, [winner])
        before = Event("before", "00007", C, Kind.INCREMENT, 1, START - timedelta(days=1), "s-2")
        await apply_events(conn, [before])
        assert await _counted(conn) == {(C, _day(6)): 1, (C, _day(4)): 1, (C, _day(5)): 2}
    finally:
        await conn.close()


async def _every_day(conn: asyncpg.Connection, indicator: str) -> int:
    found: int | None = await conn.fetchval(
        "SELECT writes FROM history_reach"
        " WHERE campaign_id = 'c1' AND indicator = $1 AND day = '-infinity'",
        indicator,
    )
    return found or 0


async def test_a_replan_counts_under_every_day_of_each_indicator(database: str) -> None:
    await build_world(database, starts_at=START, indicators=(C, E))
    conn = await asyncpg.connect(database)
    try:
        await apply_events(conn, [_event("c", "00004", C, START + timedelta(days=9))])
        before = {i: await _every_day(conn, i) for i in (C, E)}
        async with conn.transaction():
            await admin.upsert_targets(
                conn, "c1", [TargetIn(unit="00004", indicator=C, target=1000, baseline=50)], "t"
            )
        assert {i: await _every_day(conn, i) for i in (C, E)} == {
            C: before[C] + 1,
            E: before[E] + 1,
        }
        # counted under every day: the reader of any window sees it
        for day in (_day(0) - timedelta(days=1), _day(3), _day(60)):
            assert (await reach.reached(conn, "c1", day))[E] == before[E] + 1
    finally:
        await conn.close()


async def test_the_notifier_reads_the_counts_through_its_view(database: str) -> None:
    await build_world(database, starts_at=START, indicators=(C,))
    conn = await asyncpg.connect(database)
    try:
        await apply_events(conn, [_event("c", "00004", C, START + timedelta(days=2))])
    finally:
        await conn.close()
    notifier = await asyncpg.connect(database.replace("://tiendo@", "://tiendo_notifier@", 1))
    try:
        found = await reach.reached(notifier, "c1", _day(3))
        assert found == {C: 1 + await _every_day(notifier, C)}
    finally:
        await notifier.close()
