"""The day rollups the apply keeps equal the history at every local midnight in any order of
arrival: an event that arrives after a later snapshot of its key covering it (an increment
before the snapshot, an older snapshot, a dethroned citizen's count) changes the days
between the two, though not the live value. The in-order case, and the history this
reuses, are in tests/boards/test_day_rollups.py."""

import random

import asyncpg
import pytest

from tests.boards.test_day_rollups import CCCD, EID, UNITS, _at, _campaign_world, _e, history
from tiendo import counting
from tiendo.board import days
from tiendo.board import repository as board
from tiendo.counting import rollups
from tiendo.event import Event, Kind


def _late_cover() -> list[Event]:
    """The smallest case: a ward's snapshot on day 5, then its increments of days 1 and 3
    and an older snapshot of day 2, each arriving after it; the live value stays the
    snapshot's, the days between move."""
    return [
        _e(101, "00004", _at(5, 9), 80, kind=Kind.SNAPSHOT),
        _e(102, "00004", _at(5, 10), 2),
        _e(103, "00004", _at(1, 9), 7),
        _e(104, "00004", _at(3, 9), 4),
        _e(105, "00004", _at(2, 9), 30, kind=Kind.SNAPSHOT),
        _e(106, "00004", _at(2, 11), 1),
    ]


def _orders() -> dict[str, list[Event]]:
    shuffled = []
    for seed in (1, 2, 3):
        events = history()
        random.Random(seed).shuffle(events)
        shuffled.append(events)
    return {
        "late-cover": _late_cover(),
        "reversed": list(reversed(history())),
        "shuffled-1": shuffled[0],
        "shuffled-2": shuffled[1],
        "shuffled-3": shuffled[2],
    }


ORDERS = _orders()


@pytest.mark.parametrize("order", sorted(ORDERS))
async def test_day_rollups_equal_the_history_in_any_order(database: str, order: str) -> None:
    await _campaign_world(database)
    events = ORDERS[order]
    conn = await asyncpg.connect(database)
    try:
        # batches of a few, and one alone: a late event in a batch of its own and beside
        # the events it arrived with
        for first in range(0, len(events), 3):
            await counting.apply_events(conn, events[first : first + 3])
        campaign = await board.campaign(conn, "c1")
        assert campaign is not None
        for indicator in (CCCD, EID):
            live = {c.unit: c.value for c in await board.counters_of(conn, "c1", indicator, UNITS)}
            for day in range(11):
                midnight = _at(day, 0)
                rolled = await days.values_at(conn, campaign, {indicator: live}, midnight)
                found = await counting.as_of(
                    conn, "c1", [indicator], UNITS, campaign.starts_at, midnight
                )
                assert rolled[indicator] == {u: found[indicator, u].value for u in UNITS}, (
                    indicator,
                    day,
                )
        # and the recount of an admin change finds the same rows
        applied = await _rows(conn)
        async with conn.transaction():
            await rollups.recount_days(conn, "c1")
            assert await _rows(conn) == applied
    finally:
        await conn.close()


async def _rows(conn: asyncpg.Connection) -> set[tuple[object, ...]]:
    return {
        tuple(r)
        for r in await conn.fetch(
            "SELECT unit, indicator, day, change, increments FROM subtree_days"
            " WHERE campaign_id = 'c1' AND (change <> 0 OR increments <> 0)"
        )
    }
