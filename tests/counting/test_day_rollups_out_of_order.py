"""The day rollups the apply keeps against the history (their recount) when reports
arrive out of order with snapshots involved: an event that arrives after a later snapshot
of its key covering it (an increment before the snapshot, an older snapshot), or a new
latest snapshot after stored events later than it. The apply places each on the days it
changes (`tiendo.counting.rollups`: `LATE`, the walk ending in `walk_changes`); before it
did, these days waited for the next re-plan. The in-order case, and the history this reuses, are in
tests/boards/test_day_rollups.py. The days' counted increments and events are sums, exact
in any order: the last test holds them so."""

import random
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from tests.boards.test_day_rollups import _at, _campaign_world, _e, _rows, history
from tiendo import counting
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


Rows = set[tuple[object, ...]]


async def _applied_and_recounted(
    database: str, order: str, read: Callable[[asyncpg.Connection], Awaitable[Rows]]
) -> tuple[Rows, Rows]:
    """What `read` finds after the apply of `order`'s events, then after their recount
    (the one of every re-plan, which reads the history and equals it at every local
    midnight: tests/boards/test_day_rollups.py)."""
    await _campaign_world(database)
    events = ORDERS[order]
    conn = await asyncpg.connect(database)
    try:
        # batches of a few: a late event beside the events it arrived with
        for first in range(0, len(events), 3):
            await counting.apply_events(conn, events[first : first + 3])
        applied = await read(conn)
        async with conn.transaction():
            await rollups.recount_days(conn, "c1")
            return applied, await read(conn)
    finally:
        await conn.close()


@pytest.mark.parametrize("order", sorted(ORDERS))
async def test_day_rollups_equal_their_recount_in_any_order(database: str, order: str) -> None:
    applied, recounted = await _applied_and_recounted(database, order, _rows)
    assert applied == recounted


COUNTS = """
SELECT unit, indicator, day, increments, events FROM subtree_days
WHERE campaign_id = 'c1' AND (increments <> 0 OR events <> 0)
"""


async def _counts(conn: asyncpg.Connection) -> Rows:
    return {tuple(r) for r in await conn.fetch(COUNTS)}


@pytest.mark.parametrize("order", sorted(ORDERS))
async def test_day_counts_equal_their_recount_in_any_order(database: str, order: str) -> None:
    # what the readers of the days' counts see (the drill-down's bars, the events of today,
    # a briefing's history version): with a citizen's count moved by its late earlier
    # event in every order
    applied, recounted = await _applied_and_recounted(database, order, _counts)
    assert applied
    assert applied == recounted
