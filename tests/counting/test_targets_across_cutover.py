"""A target set on a unit that stays in force across a cut-over stands for its whole
subtree on both sides of it: the wards' targets the cut-over carries onto the communes
below it do not add to it (`tiendo.board.plans`, `tiendo.rollup.effective_targets`). A
parent without one still sums what its children carry."""

from datetime import datetime, timedelta

import asyncpg
import pytest

from services.aggregator import cutover
from services.aggregator.admin import TargetIn
from tests.counting.test_cutover import CCCD, TARGETS, world
from tests.counting.trees import CUT

HOUR = timedelta(hours=1)
WARDS = sum(t.target or 0 for t in TARGETS)


async def city_target(conn: asyncpg.Connection) -> int:
    target: int = await conn.fetchval(
        "SELECT target FROM progress WHERE campaign_id = 'c1' AND unit = '01' AND indicator = $1",
        CCCD,
    )
    return target


@pytest.mark.parametrize(("city", "expected"), [(1000, 1000), (None, WARDS)])
async def test_a_city_target_is_the_same_on_both_trees(
    database: str, city: int | None, expected: int
) -> None:
    targets = [*TARGETS]
    if city is not None:
        targets.append(TargetIn(unit="01", indicator=CCCD, target=city, baseline=0))
    conn = await world(database, targets=targets)
    try:
        # planned a day before the cut-over, on the wards' tree; then moved past it
        async with conn.transaction():
            await cutover.after_tree_change(conn, now=CUT - 24 * HOUR)
        before = await city_target(conn)
        async with conn.transaction():
            await cutover.replan_passed(conn, CUT + HOUR)
        after = await city_target(conn)
        assert (before, after) == (expected, expected)
        moved: datetime | None = await conn.fetchval("SELECT tree_at FROM campaigns")
        assert moved == CUT  # the move did happen
    finally:
        await conn.close()
