"""An alert whose key is no longer judged closes with its reason, never as "back on track"
(docs/alerts.md "Closed without clearing"): its target removed (set to 0, the unit
exempted), or its unit replaced at a cut-over of the tree (docs/units-over-time.md: old
wards' open alerts resolve at the cut-over). Before, both told the chief the unit was back
on track, with its old figures (50 of 1,000, 5.0 %)."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from services.aggregator import cutover
from services.aggregator.admin import TargetIn, upsert_targets
from services.aggregator.tree_load import CrosswalkIn, TreeUnitIn, TreeVersionIn, load_tree_version
from services.notifier.render import Renderer
from tests.support.notifier import (
    BEHIND_ONLY,
    Feed,
    policy_evaluator,
    progress,
    queued,
    tree_with_webhooks,
)
from tests.support.world import build_world
from tiendo.database import create_pool
from tiendo.unit_keys import cut_over

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)  # Wednesday 10:00 local
LAGGING = STARTS + timedelta(days=10)  # 00010 at 50 of the 200 planned
POLICY = {**BEHIND_ONLY, "language": "en"}
GROUP_WAIT = timedelta(seconds=61)
# The test tree from 25 May 2023: ward 00010 goes whole into 00007, and its district 002,
# left without wards, is not continued.
DAY = date(2023, 5, 25)
MERGED = TreeVersionIn(
    units=[
        TreeUnitIn(code="01", name="Thành phố Hà Nội", level=1),
        TreeUnitIn(code="001", name="Quận Ba Đình", level=2, parent_code="01"),
        TreeUnitIn(code="00004", name="Phường Phúc Xá", level=3, parent_code="001"),
        TreeUnitIn(code="00007", name="Phường Trúc Bạch", level=3, parent_code="001"),
    ],
    crosswalk=[CrosswalkIn(old_code="00010", new_code="00007", transfer="whole")],
)


async def _lagging_ward(database: str, conn: asyncpg.Connection, pool: asyncpg.Pool) -> Any:
    """Ward 00010 behind from `LAGGING` on and told; the others keep pace (district 002
    reports 250 of its own). The evaluator."""
    evaluator = await policy_evaluator(conn, database, "c1", POLICY)
    await Feed(database).send(
        *(
            progress(unit, value, at=LAGGING)
            for unit, value in (("00004", 300), ("00007", 300), ("00010", 50), ("002", 250))
        )
    )
    await evaluator.evaluate_at(pool, LAGGING)
    await evaluator.evaluate_at(pool, LAGGING + GROUP_WAIT)
    [told] = await queued(conn)
    assert told.firing == [("00010", "behind", 50, 1000, 0)]
    return evaluator


def _in_vietnamese(body: dict[str, Any]) -> str:
    """The same message as a contact reading Vietnamese gets it (email and chat)."""
    text = Renderer().alert("vi", body)
    return text.text + text.chat


async def test_a_removed_target_closes_the_alert_as_no_longer_tracked(database: str) -> None:
    await build_world(database, starts_at=STARTS, units=tree_with_webhooks())
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=4)
    try:
        evaluator = await _lagging_ward(database, conn, pool)
        async with conn.transaction():
            zero = TargetIn(unit="00010", indicator="cccd_collected", target=0)
            await upsert_targets(conn, "c1", [zero], "admin")
        await evaluator.evaluate_at(pool, LAGGING + timedelta(hours=1))
        await evaluator.evaluate_at(pool, LAGGING + timedelta(hours=1) + GROUP_WAIT)
        [closed] = (await queued(conn))[1:]
        assert (closed.recipient, closed.kind, closed.resolved) == (
            "00010",
            "resolved",
            [("00010", "behind")],
        )
        text, chat = closed.body["text"], closed.body["chat"]
        assert "back on track" not in (text + chat).lower()
        [alert] = closed.body["resolved"]
        assert (alert["closed_because"], alert["deadline_passed"]) == ("untracked", False)
        assert "No longer tracked:" in text
        assert "no target in the campaign any more" in text
        assert "no target any more, no longer tracked" in chat
        vi = _in_vietnamese(closed.body)
        assert "trở lại đúng tiến độ" not in vi
        assert "đã đúng tiến độ" not in vi
        assert "Không còn theo dõi:" in vi
        assert "không còn chỉ tiêu trong đợt" in vi
    finally:
        await pool.close()
        await conn.close()


async def test_a_cut_over_closes_the_old_wards_alert_naming_its_successor(
    database: str,
) -> None:
    await build_world(database, starts_at=STARTS, units=tree_with_webhooks())
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=4)
    try:
        async with conn.transaction():
            # loaded ahead of its day, the campaign planned on today's tree then
            await load_tree_version(conn, DAY, MERGED, "test", now=LAGGING)
        evaluator = await _lagging_ward(database, conn, pool)
        cut = cut_over(DAY)
        async with conn.transaction():
            assert await cutover.replan_passed(conn, cut + timedelta(seconds=10)) == ["c1"]
        await evaluator.evaluate_at(pool, cut + timedelta(seconds=20))
        await evaluator.evaluate_at(pool, cut + timedelta(seconds=20) + GROUP_WAIT)
        assert await conn.fetchval("SELECT state FROM alerts WHERE unit = '00010'") == "resolved"
        [closed] = [m for m in (await queued(conn))[1:] if m.recipient == "00010"]
        text, chat = closed.body["text"], closed.body["chat"]
        assert "back on track" not in (text + chat).lower()
        [alert] = closed.body["resolved"]
        assert alert["closed_because"] == "replaced"
        assert alert["successors"] == [
            {"unit": "00007", "code": "00007", "name": "Phường Trúc Bạch"}
        ]
        assert datetime.fromisoformat(alert["replaced_at"]) == cut
        assert (
            "the unit was replaced by Phường Trúc Bạch (00007) at the reorganisation of"
            " 00:00 25/05/2023" in text
        )
        assert "unit replaced at the reorganisation (Phường Trúc Bạch)" in chat
        vi = _in_vietnamese(closed.body)
        assert "đúng tiến độ" not in vi
        assert "đã được thay bằng Phường Trúc Bạch (00007)" in vi
    finally:
        await pool.close()
        await conn.close()
