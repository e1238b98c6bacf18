"""A large subtree's `as_of` reads its part of the day as one range of the events, whatever
the planner prefers. On the 10 M dataset, once a few percent of the table's pages had left
the visibility map (the inserts since the last vacuum, as in any live deployment), the
planner costed that range's index-only scan with heap visits and joined the versions to
the events one probe per version instead: the country's noon went from 0.3 to 2.1 s. The
range reads are fenced from the join (`as_of_days._range_of`). Here a table of a few hundred
thousand events never vacuumed (none in the visibility map) makes the planner prefer those
probes, as it did there, and the reads must still be ranges."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.support.world import TREE, build_world
from tiendo import counting
from tiendo.counting import as_of_days
from tiendo.event import Event, Kind

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
CCCD = "cccd_collected"
UNITS = [u.code for u in TREE]
OLD_EVENTS = 300_000
# the CTEs that read a range of the day for a large subtree (`recent`, read once, is
# planned inside the one that reads it)
RANGE_READS = ("CTE day_sums", "CTE root_recent")


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _executed_probes(plan: dict[str, Any]) -> dict[str, int]:
    """Per range-reading CTE, how many times it probed the events by one unit's index."""
    probes: dict[str, int] = {}
    for node in _nodes(plan):
        if node.get("Subplan Name") in RANGE_READS:
            probes[node["Subplan Name"]] = sum(
                n.get("Actual Loops", 0)
                for n in _nodes(node)
                if n.get("Index Name") == "events_unit_indicator_time"
            )
    return probes


async def test_a_large_subtree_reads_its_day_as_one_range_whatever_the_planner_prefers(
    database: str,
) -> None:
    await build_world(database, starts_at=STARTS, days=6)
    conn = await asyncpg.connect(database)
    try:
        # reports on every unit through the day, so that there is a range to read
        events = [
            Event(f"e{i}", unit, CCCD, Kind.INCREMENT, 1, STARTS + timedelta(minutes=7 * i))
            for i, unit in enumerate(UNITS * 4)
        ]
        await counting.apply_events(conn, events)
        # A national table as the planner sees it: history enough to cost a range of it
        # as much heap to visit, none of it vacuumed, over ten thousand units (so that a
        # unit's own events look few). Counted reports a year before the campaign, of
        # units of no tree: outside every figure read (the range's bounds are computed in
        # the statement, so the planner cannot know they miss it).
        await conn.execute("ALTER TABLE events SET (autovacuum_enabled = false)")
        await conn.execute(
            """
            INSERT INTO events (event_id, unit, indicator, kind, value, occurred_at)
            SELECT 'old' || g, 'gone' || g % 10000, $1, 'increment', 1,
                   $2::timestamptz - interval '1 minute' * g
            FROM generate_series(1, $3) AS g
            """,
            CCCD,
            STARTS - timedelta(days=365),
            OLD_EVENTS,
        )
        # (its statistics, as autovacuum would gather them; ANALYZE sets no page visible)
        await conn.execute("ANALYZE events")
        at = STARTS + timedelta(hours=5)
        args = [UNITS, "c1", [CCCD], STARTS, at, None, 0, "after", 0, as_of_days.FEW_ROOTS]
        async with conn.transaction():
            await conn.execute("SET LOCAL jit = off")
            explained = await conn.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + as_of_days.AS_OF_FROM_DAYS, *args
            )
            reading = await as_of_days.read(
                conn, "c1", [CCCD], UNITS, STARTS, at, small_subtree=0, side="after"
            )
        history = await counting.as_of_history(conn, "c1", [CCCD], UNITS, STARTS, at)
    finally:
        await conn.close()
    plan = json.loads(explained)[0]
    probes = _executed_probes(plan["Plan"])
    # both ran (the large subtree's path, read after the moment) ...
    assert set(probes) == set(RANGE_READS), probes
    # ... as ranges: no probe of one unit's events in either
    assert probes == dict.fromkeys(RANGE_READS, 0), probes
    # and the reading is the history's
    assert reading is not None
    assert {k: counting.ValueAt(*v) for k, v in reading.figures.items()} == history


async def test_a_read_in_the_callers_transaction_leaves_its_planner_settings(
    database: str,
) -> None:
    """The read turns JIT and sorting off for itself; inside a caller's transaction (a
    campaign's comparison, say) the caller's statements after it plan as before."""
    await build_world(database, starts_at=STARTS, days=6)
    conn = await asyncpg.connect(database)
    try:
        events = [
            Event(f"e{i}", unit, CCCD, Kind.INCREMENT, 1, STARTS + timedelta(hours=i))
            for i, unit in enumerate(UNITS)
        ]
        await counting.apply_events(conn, events)
        at = STARTS + timedelta(days=1)

        async def settings() -> tuple[str, str]:
            row = await conn.fetchrow(
                "SELECT current_setting('jit'), current_setting('enable_sort')"
            )
            assert row is not None
            return row[0], row[1]

        async with conn.transaction():
            await conn.execute("SET LOCAL jit = on; SET LOCAL enable_sort = on")
            reading = await as_of_days.read(conn, "c1", [CCCD], UNITS, STARTS, at)
            assert reading is not None
            assert await settings() == ("on", "on")
        # on its own, the read's transaction ends with it
        assert await as_of_days.read(conn, "c1", [CCCD], UNITS, STARTS, at) == reading
        assert await settings() == (
            await conn.fetchval("SELECT reset_val FROM pg_settings WHERE name = 'jit'"),
            "on",
        )
    finally:
        await conn.close()
