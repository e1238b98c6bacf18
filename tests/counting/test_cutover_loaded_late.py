"""A tree version loaded after its day has passed (docs/units-over-time.md "Known limits"):
the events applied between the day and the load move to the versions their codes mean on
the new tree, and the live counters and day rollups move with them, so live equals `as_of`
now and the history. Before, the load moved the events in `events` but re-planned the
campaigns without a recount: a split ward's successors showed the events by shares (11 and
10 live, 16 and 5 in the history), and a merge whose retired ward had sent a snapshot
counted it on top of its successor's own figures (the city at 108 live and in `as_of`,
103 in the history, the recount and `tiendo check`)."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from services.aggregator import admin
from services.aggregator.repository import apply as apply_sql
from services.aggregator.tree_load import (
    CrosswalkIn,
    TreeUnitIn,
    TreeVersionIn,
    load_tree_version,
)
from tests.support.world import TREE, build_world
from tiendo import counting
from tiendo.event import Event, Kind
from tiendo.unit_keys import TREE_ZONE, cut_over, version_key

CCCD = "cccd_collected"
NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=10)
# a day that has passed when its tree is loaded
DAY = (NOW.astimezone(TREE_ZONE) - timedelta(days=3)).date()
CUT = cut_over(DAY)
HOUR = timedelta(hours=1)


def e(event_id: str, code: str, at: datetime, value: int, kind: Kind = Kind.INCREMENT) -> Event:
    return Event(event_id, code, CCCD, kind, value, at)


def tree_rows(*extra: TreeUnitIn, without: str | None = None) -> list[TreeUnitIn]:
    """The world's tree as a tree version's rows, less `without`, plus `extra`."""
    rows = [
        TreeUnitIn(code=u.code, name=u.name, type=u.type, level=u.level, parent_code=u.parent_code)
        for u in TREE
        if u.code != without
    ]
    return [*rows, *extra]


@pytest.fixture
async def conn(database: str) -> AsyncIterator[asyncpg.Connection]:
    await build_world(database, starts_at=START, days=30)
    connection = await asyncpg.connect(database)
    yield connection
    await connection.close()


async def figures(conn: asyncpg.Connection) -> dict[str, dict[str, tuple[int, datetime | None]]]:
    """Every unit of the campaign's tree now, as the live counters, the readers' `as_of`
    now and the history now show it."""
    rows = await conn.fetch(
        "SELECT p.unit, p.value, p.last_event_at FROM progress p"
        " JOIN units u ON u.code = p.unit JOIN campaigns c ON c.id = p.campaign_id"
        " WHERE p.campaign_id = 'c1' AND p.indicator = $1 AND u.valid_from <= c.tree_at"
        " AND c.tree_at < coalesce(u.valid_to, 'infinity')",
        CCCD,
    )
    units = sorted(r["unit"] for r in rows)
    now = datetime.now(UTC)
    read = await counting.as_of(conn, "c1", [CCCD], units, START, now)
    history = await counting.as_of_history(conn, "c1", [CCCD], units, START, now)
    return {
        "live": {r["unit"]: (r["value"], r["last_event_at"]) for r in rows},
        "as_of": {u: (v.value, v.last_event_at) for (_, u), v in read.items()},
        "history": {u: (v.value, v.last_event_at) for (_, u), v in history.items()},
    }


async def assert_one_state(conn: asyncpg.Connection) -> dict[str, tuple[int, datetime | None]]:
    """Live == `as_of` now == the history now on every unit, and the day rollups right at
    moments since the cut-over (the readers' `as_of` there reads them); the figures."""
    found = await figures(conn)
    units = list(found["live"])
    for at in (CUT + 2 * HOUR + HOUR / 2, CUT + 4 * HOUR, CUT + 30 * HOUR):
        read = await counting.as_of(conn, "c1", [CCCD], units, START, at)
        history = await counting.as_of_history(conn, "c1", [CCCD], units, START, at)
        assert {u: v for (_, u), v in read.items()} == {u: v for (_, u), v in history.items()}
    assert found["live"] == found["as_of"] == found["history"]
    return found["live"]


async def recounted(conn: asyncpg.Connection) -> dict[str, tuple[int, datetime | None]]:
    """The live figures after a recount from the stored events (what a rebuild ends at)."""
    async with conn.transaction():
        await conn.execute(apply_sql.LOCK_REPLAN)
        await admin.replan(conn, "c1", recount=True)
    return (await figures(conn))["live"]


async def test_a_split_loaded_late_moves_the_counters_with_the_events(
    conn: asyncpg.Connection,
) -> None:
    await counting.apply_events(
        conn,
        [
            e("before", "00007", CUT - 24 * HOUR, 10),
            e("after1", "00007", CUT + 2 * HOUR, 7),
            e("after2", "00007", CUT + 3 * HOUR, 4),
        ],
    )
    body = TreeVersionIn(
        units=tree_rows(TreeUnitIn(code="00013", name="Phường Mới", level=3, parent_code="001")),
        crosswalk=[
            CrosswalkIn(old_code="00007", new_code="00007", transfer="part", share=Decimal("0.5")),
            CrosswalkIn(old_code="00007", new_code="00013", transfer="part", share=Decimal("0.5")),
        ],
    )
    async with conn.transaction():
        await load_tree_version(conn, DAY, body, "test")
    kept = version_key("00007", DAY)
    # after1 and after2 are the new 00007's; the 10 of before is split 5 / 5
    assert await conn.fetchval("SELECT count(*) FROM events WHERE unit = $1", kept) == 2
    details = await conn.fetchval(
        "SELECT details->>'events_moved' FROM audit_log WHERE action = 'units.version'"
    )
    assert details == "2"
    live = await assert_one_state(conn)
    assert live[kept] == (5 + 7 + 4, CUT + 3 * HOUR)
    # 00013 has no report of its own: its last is the old ward's, carried with its share
    assert live["00013"] == (5, CUT - 24 * HOUR)
    assert live["01"] == (21, CUT + 3 * HOUR)
    assert await recounted(conn) == live


async def test_a_merge_loaded_late_counts_the_retired_wards_snapshot_once(
    conn: asyncpg.Connection,
) -> None:
    await counting.apply_events(
        conn,
        [
            e("a1", "00004", CUT + HOUR, 5),
            e("snap", "00007", CUT + 2 * HOUR, 100, Kind.SNAPSHOT),
            e("a2", "00004", CUT + 3 * HOUR, 3),
        ],
    )
    body = TreeVersionIn(
        units=tree_rows(without="00007"),
        crosswalk=[CrosswalkIn(old_code="00007", new_code="00004", transfer="whole")],
    )
    async with conn.transaction():
        await load_tree_version(conn, DAY, body, "test")
    # the retired ward's snapshot, sent in its grace, is its successor's whole own total
    assert await conn.fetchval("SELECT unit FROM events WHERE event_id = 'snap'") == "00004"
    live = await assert_one_state(conn)
    assert live["00004"] == (100 + 3, CUT + 3 * HOUR)
    assert live["01"] == (103, CUT + 3 * HOUR)
    assert await recounted(conn) == live
