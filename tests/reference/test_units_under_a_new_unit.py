"""A unit added by `PUT /v1/units` (the units import without `--valid-from`) under a unit a
tree version opened begins with its parent (docs/units-over-time.md "Loading a tree
version"): a residential group under a commune of July 2025 is taken, its events count and
roll up, live equal to `as_of` now. Before, every new code began at '-infinity', before its
parent, and was refused with "the parent began after the unit; load a tree version"."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from services.aggregator import admin
from services.aggregator.admin import ReferenceError, UnitIn
from services.aggregator.tree_load import (
    CrosswalkIn,
    TreeUnitIn,
    TreeVersionIn,
    load_tree_version,
)
from tests.support.world import TREE, build_world
from tiendo import counting
from tiendo.event import Event, Kind
from tiendo.unit_keys import TREE_ZONE, cut_over

CCCD = "cccd_collected"
NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=10)
DAY = (NOW.astimezone(TREE_ZONE) - timedelta(days=3)).date()
CUT = cut_over(DAY)
HOUR = timedelta(hours=1)
NEW_WARD = TreeUnitIn(code="00013", name="Phường Mới", level=3, parent_code="001")
# 00007 split half and half into itself (a new version) and the new ward 00013
SPLIT = TreeVersionIn(
    units=[
        *(
            TreeUnitIn(code=u.code, name=u.name, level=u.level, parent_code=u.parent_code)
            for u in TREE
        ),
        NEW_WARD,
    ],
    crosswalk=[
        CrosswalkIn(old_code="00007", new_code="00007", transfer="part", share=Decimal("0.5")),
        CrosswalkIn(old_code="00007", new_code="00013", transfer="part", share=Decimal("0.5")),
    ],
)


@pytest.fixture
async def conn(database: str) -> AsyncIterator[asyncpg.Connection]:
    await build_world(database, starts_at=START, days=30)
    connection = await asyncpg.connect(database)
    async with connection.transaction():
        await load_tree_version(connection, DAY, SPLIT, "test")
    yield connection
    await connection.close()


def e(event_id: str, code: str, at: datetime, value: int) -> Event:
    return Event(event_id, code, CCCD, Kind.INCREMENT, value, at)


async def valid_from(conn: asyncpg.Connection, code: str) -> datetime:
    moment: datetime = await conn.fetchval("SELECT valid_from FROM units WHERE code = $1", code)
    return moment


async def live_and_as_of_now(
    conn: asyncpg.Connection, units: list[str]
) -> tuple[dict[str, int], dict[str, int]]:
    rows = await conn.fetch(
        "SELECT unit, value FROM progress WHERE campaign_id = 'c1' AND indicator = $1"
        " AND unit = ANY ($2::text[])",
        CCCD,
        units,
    )
    found = await counting.as_of(conn, "c1", [CCCD], units, START, datetime.now(UTC))
    return {r["unit"]: r["value"] for r in rows}, {u: v.value for (_, u), v in found.items()}


async def test_a_group_under_a_new_commune_begins_with_it_and_counts(
    conn: asyncpg.Connection,
) -> None:
    # a group and a sub-group, listed before the group they hang under
    async with conn.transaction():
        await admin.upsert_units(
            conn,
            [
                UnitIn(code="T1-1", name="Tổ 1 nhánh 1", level=5, parent_code="T1"),
                UnitIn(code="T1", name="Tổ 1", level=4, parent_code="00013"),
            ],
            "test",
        )
    assert await valid_from(conn, "T1") == await valid_from(conn, "T1-1") == CUT
    # a new group under a ward in force since always begins as the ward does
    async with conn.transaction():
        await admin.upsert_units(
            conn, [UnitIn(code="T2", name="Tổ 2", level=4, parent_code="00004")], "test"
        )
    assert await conn.fetchval("SELECT valid_from = '-infinity' FROM units WHERE code = 'T2'")

    await counting.apply_events(
        conn, [e("g1", "T1", CUT + HOUR, 4), e("g2", "T1-1", CUT + 2 * HOUR, 3)]
    )
    # before the commune began the group was nowhere: its code meant nothing then
    with pytest.raises(ValueError, match="unknown unit T1"):
        await counting.apply_events(conn, [e("early", "T1", CUT - HOUR, 9)])
    units = ["T1-1", "T1", "00013", "001", "01"]
    live, as_of = await live_and_as_of_now(conn, units)
    assert live == as_of == {"T1-1": 3, "T1": 7, "00013": 7, "001": 7, "01": 7}


async def test_an_existing_unit_still_cannot_move_under_a_later_one(
    conn: asyncpg.Connection,
) -> None:
    # 00004 was in force long before 00013 began: moving it under 00013 would give it, in
    # the past, a parent it never had; that is a tree version's change
    with pytest.raises(ReferenceError, match="the parent began after the unit"):
        async with conn.transaction():
            await admin.upsert_units(
                conn,
                [UnitIn(code="00004", name="Phường Phúc Xá", level=4, parent_code="00013")],
                "test",
            )
