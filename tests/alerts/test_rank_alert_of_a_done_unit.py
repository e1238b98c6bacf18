"""A unit that reaches its target after the weekly briefing is no laggard any more
(docs/alerts.md: units that reached their target are never "bottom"): its `bottom_rank`
alert closes at the next full pass, by the board's own rule (`tiendo.pace.is_done`), and
nothing repeats or escalates about it. Before, the alert held all week, its repeats and
its escalation to the district listing the ward at 1,000 of 1,000."""

from datetime import UTC, datetime, timedelta

import asyncpg

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

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)  # Wednesday 10:00 local
BRIEFING = datetime(2023, 5, 15, 1, 0, tzinfo=UTC)  # Monday 08:00 local
DONE_AT = datetime(2023, 5, 16, 3, 0, tzinfo=UTC)  # Tuesday: 00010 reaches its 1,000
POLICY = {
    **BEHIND_ONLY,
    "behind": {"enabled": False},
    # the lowest ward at the briefing; escalated after a day
    "bottom_rank": {"enabled": True, "n": 1, "level": 3, "for_seconds": 0},
    "escalate_after_seconds": 86400,
    "escalation_levels": 2,
}


async def test_the_rank_alert_closes_once_the_unit_is_done(database: str) -> None:
    await build_world(database, starts_at=STARTS, units=tree_with_webhooks())
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=4)
    try:
        evaluator = await policy_evaluator(conn, database, "c1", POLICY)
        feed = Feed(database)
        reported = datetime(2023, 5, 12, 3, 0, tzinfo=UTC)
        await feed.send(
            *(
                progress(unit, value, at=reported)
                for unit, value in (("00004", 600), ("00007", 300), ("00010", 50), ("002", 600))
            )
        )
        await evaluator.evaluate_at(pool, BRIEFING + timedelta(minutes=5))
        await evaluator.evaluate_at(pool, BRIEFING + timedelta(minutes=7))
        [told] = await queued(conn)
        assert (told.recipient, told.firing) == ("00010", [("00010", "bottom_rank", 50, 1000, 0)])

        await feed.send(progress("00010", 1000, at=DONE_AT))
        await evaluator.evaluate_at(pool, DONE_AT + timedelta(minutes=10))
        rank = await conn.fetchrow(
            "SELECT state, resolved_at FROM alerts WHERE unit = '00010' AND rule = 'bottom_rank'"
        )
        assert rank is not None
        assert (rank["state"], rank["resolved_at"]) == ("resolved", DONE_AT + timedelta(minutes=10))
        # past the repeat and escalation times of the week
        for at in (
            BRIEFING + timedelta(days=1, minutes=10),
            BRIEFING + timedelta(days=2, minutes=10),
            BRIEFING + timedelta(days=2, minutes=12),
        ):
            await evaluator.evaluate_at(pool, at)
        messages = await queued(conn)
        # the chief hears it closed, once; nobody hears of it firing again
        assert [(m.recipient, m.kind, m.firing, m.resolved) for m in messages[1:]] == [
            ("00010", "resolved", [], [("00010", "bottom_rank")])
        ]
        assert await conn.fetchval("SELECT count(*) FROM alerts WHERE state <> 'resolved'") == 0
    finally:
        await pool.close()
        await conn.close()
