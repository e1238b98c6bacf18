"""A unit's progress (`GET .../progress/{unit}`) judges the unit alone and counts its children
done from their values and targets (issue 15: the country's 8 × 63 provinces were judged in
full for one count each). Held here equal to judging every child in full, live and `as_of`,
at moments where the count differs."""

from datetime import UTC, datetime, timedelta

import asyncpg

from services.aggregator.admin import TargetIn, upsert_targets
from services.aggregator.progress import _figures, progress_of
from tests.support.world import build_world
from tiendo.board import repository as board
from tiendo.board.figures import judge
from tiendo.counting import apply_events
from tiendo.event import Event, Kind
from tiendo.pace import Status

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=10)
CCCD, EID = "cccd_collected", "eid_activated_l2"
DAY, HOUR = timedelta(days=1), timedelta(hours=1)


def _events() -> list[Event]:
    def e(n: int, unit: str, indicator: str, kind: Kind, value: int, ago: timedelta) -> Event:
        return Event(f"p-{n}", unit, indicator, kind, value, NOW - ago)

    return [
        # 00004 passes its target of 300 five days ago; 00007 (1,000) only an hour ago
        e(1, "00004", CCCD, Kind.INCREMENT, 200, 8 * DAY),
        e(2, "00004", CCCD, Kind.INCREMENT, 150, 5 * DAY),
        e(3, "00007", CCCD, Kind.SNAPSHOT, 600, 6 * DAY),
        e(4, "00007", CCCD, Kind.INCREMENT, 450, HOUR),
        # 00010 has no target: at 0 of 0 done by the rule whatever it reports, no child
        # the campaign judges
        e(5, "00010", CCCD, Kind.INCREMENT, 40, 3 * DAY),
        # the other indicator: one ward on its way, the others silent
        e(6, "00007", EID, Kind.INCREMENT, 120, 2 * DAY),
    ]


async def test_a_units_children_done_are_those_their_full_verdicts_call_done(
    database: str,
) -> None:
    await build_world(
        database,
        starts_at=START,
        days=30,
        targets={"00004": 300, "00007": 1000},
        indicators=(CCCD, EID),
    )
    conn = await asyncpg.connect(database)
    try:
        await apply_events(conn, _events())
        campaign = await board.campaign(conn, "c1")
        assert campaign is not None
        counts: set[tuple[str, str, int, int]] = set()
        for unit, children in (("01", ["001", "002"]), ("001", ["00004", "00007"])):
            for at, live in (
                (NOW, True),
                (NOW, False),
                (NOW - 6 * DAY, False),
                (NOW - 2 * DAY, False),
            ):
                got = {
                    p.indicator: p.model_dump(exclude={"indicator"})
                    for p in await progress_of(conn, campaign, unit, children, at, live=live)
                }
                want = {}
                for indicator in campaign.indicators:
                    whole = await judge(conn, campaign, indicator, [unit, *children], at, live=live)
                    if unit not in whole:
                        continue
                    # the children the campaign judges: those with a target (002 and
                    # 00010 have none: at 0 of 0 they would pass for done)
                    judged = [c for c in children if c in whole and whole[c].progress.target > 0]
                    done = sum(1 for c in judged if whole[c].progress.status is Status.DONE)
                    want[indicator] = _figures(whole[unit], len(judged), done)
                    counts.add((unit, indicator, len(judged), done))
                assert got == want, (unit, at, live)
        # the world exposes what it is meant to: counts that differ by moment and by unit,
        # and a child without a target (002) left out of the city's
        assert {("001", CCCD, 2, 0), ("001", CCCD, 2, 1), ("001", CCCD, 2, 2)} <= counts
        assert {(u, i, n) for u, i, n, _ in counts if u == "01"} == {
            ("01", CCCD, 1),
            ("01", EID, 1),
        }
    finally:
        await conn.close()


async def test_a_ward_past_its_own_deadline_is_judged_on_what_it_counts(database: str) -> None:
    """00004 has a deadline of its own, three days in; 00007, with the same events, has the
    campaign's. Past 00004's deadline its events still count, so the two share their value,
    run rate, projection and silence, live and `as_of` alike; only the plan differs. (The
    window was its own deadline's: 70 in a week read as 23.3 a day, not 10.)"""
    await build_world(database, starts_at=START, days=30, targets={"00004": 1000, "00007": 1000})
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            own = TargetIn(unit="00004", indicator=CCCD, target=1000, deadline=START + 3 * DAY)
            await upsert_targets(conn, "c1", [own], "test")
        await apply_events(
            conn,
            [
                Event(f"{unit}-{n}", unit, CCCD, Kind.INCREMENT, value, at)
                for unit in ("00004", "00007")
                for n, (value, at) in enumerate(((100, START + DAY), (70, NOW - 2 * DAY)))
            ],
        )
        campaign = await board.campaign(conn, "c1")
        assert campaign is not None
        for live in (True, False):
            judged = await judge(conn, campaign, CCCD, ["00004", "00007"], NOW, live=live)
            mine, theirs = judged["00004"].progress, judged["00007"].progress
            assert mine.value == theirs.value == 170
            assert mine.run_rate_7d == theirs.run_rate_7d == 10.0
            assert mine.projected_completion == theirs.projected_completion
            assert theirs.projected_completion == NOW + 83 * DAY
            # its plan ended at its own deadline
            assert (mine.expected, mine.required_daily_rate) == (1000, None)
            assert theirs.required_daily_rate is not None
    finally:
        await conn.close()
