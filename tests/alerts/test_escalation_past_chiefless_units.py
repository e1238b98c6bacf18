"""Escalation passes over a unit without a chief (docs/alerts.md "Escalation"): each level
is one more chief, the nearest unit above the last one told that has a contact of its own.
Before, an escalation to a chiefless district reached nobody, left no row in the delivery
log, and the city heard of the ward only one `escalate_after` later. When no unit above
has a chief, the delivery log says so (a failed row), or the operators' fallback webhook
gets it; a chief added later to a unit passed over is not told of what went past it."""

from datetime import UTC, datetime, timedelta

import asyncpg

from services.notifier.evaluator import Evaluator
from services.notifier.render import Renderer
from services.notifier.repository import deliveries as delivery_sql
from services.notifier.settings import NotifierSettings
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
LAGGING = STARTS + timedelta(days=10)  # 00010 at 50 of the 200 planned
POLICY = {**BEHIND_ONLY, "repeat_interval_seconds": 0, "escalation_levels": 2}
DAY = timedelta(days=1)


async def _lagging_ward(database: str, evaluator: Evaluator, pool: asyncpg.Pool) -> None:
    """Ward 00010 behind from `LAGGING` on, told after the group wait; the others keep pace
    (district 002 reports 250 of its own)."""
    await Feed(database).send(
        *(
            progress(unit, value, at=LAGGING)
            for unit, value in (("00004", 300), ("00007", 300), ("00010", 50), ("002", 250))
        )
    )
    await evaluator.evaluate_at(pool, LAGGING)
    await evaluator.evaluate_at(pool, LAGGING + timedelta(seconds=61))


async def test_an_escalation_passes_a_chiefless_district_to_the_city(database: str) -> None:
    await build_world(database, starts_at=STARTS, units=tree_with_webhooks(without=("002",)))
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=4)
    try:
        evaluator = await policy_evaluator(conn, database, "c1", POLICY)
        await _lagging_ward(database, evaluator, pool)
        escalated = await evaluator.evaluate_at(pool, LAGGING + 2 * DAY + timedelta(minutes=2))
        [(alert_id, recipient, level)] = escalated.escalations
        assert (recipient, level) == ("01", 1)  # the first chief above: level 1
        await evaluator.evaluate_at(pool, LAGGING + 2 * DAY + timedelta(minutes=4))
        city = [m for m in await queued(conn) if m.recipient == "01"]
        assert [(m.kind, m.firing) for m in city] == [
            ("firing", [("00010", "behind", 50, 1000, 1)])
        ]
        # The district gets a chief meanwhile. Level 2 goes on from the city, the top:
        # nobody new, and the district is not told of what already went past it.
        await conn.execute(
            "INSERT INTO contacts (unit, channel, address) VALUES ('002', 'webhook', $1)",
            "http://127.0.0.1:9/hook/002",
        )
        later = await evaluator.evaluate_at(pool, LAGGING + 4 * DAY + timedelta(minutes=2))
        assert later.escalations == []
        await evaluator.evaluate_at(pool, LAGGING + 4 * DAY + timedelta(minutes=4))
        assert [m for m in await queued(conn) if m.recipient == "002"] == []
        stored = await conn.fetchval("SELECT escalation_level FROM alerts WHERE id = $1", alert_id)
        assert stored == 2
    finally:
        await pool.close()
        await conn.close()


async def test_an_escalation_with_no_chief_above_is_a_failed_row_in_the_log(
    database: str,
) -> None:
    await build_world(database, starts_at=STARTS, units=tree_with_webhooks(without=("002", "01")))
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=4)
    try:
        evaluator = await policy_evaluator(conn, database, "c1", POLICY)
        await _lagging_ward(database, evaluator, pool)
        escalated = await evaluator.evaluate_at(pool, LAGGING + 2 * DAY + timedelta(minutes=2))
        assert escalated.escalations == []
        await evaluator.evaluate_at(pool, LAGGING + 2 * DAY + timedelta(minutes=4))
        [alert_id] = [
            r["id"] for r in await conn.fetch("SELECT id FROM alerts WHERE unit = '00010'")
        ]
        # the delivery log (GET /v1/notifications) shows it, for the parent, failed
        log = await delivery_sql.list_notifications(
            conn,
            status="failed",
            alert_id=alert_id,
            recipient=None,
            channel=None,
            kind=None,
            campaign="c1",
            limit=10,
        )
        [row] = log
        assert (row["kind"], row["recipient"], row["channel"], row["attempts"]) == (
            "escalation",
            "002",
            "none",
            0,
        )
        assert row["delivery_id"] == f"c1/002/a{alert_id}.e1/none"
        assert "no unit above 00010 has a chief" in row["last_error"]
        # level 2 reaches nobody either: its own row; the passes in between add none
        await evaluator.evaluate_at(pool, LAGGING + 4 * DAY + timedelta(minutes=2))
        await evaluator.evaluate_at(pool, LAGGING + 4 * DAY + timedelta(minutes=4))
        failed = await conn.fetch(
            "SELECT dedup_key FROM notifications WHERE status = 'failed' ORDER BY id"
        )
        assert [r["dedup_key"] for r in failed] == [
            f"c1/002/a{alert_id}.e1/none",
            f"c1/002/a{alert_id}.e2/none",
        ]
        # never claimed for delivery
        assert await conn.fetchval("SELECT count(*) FROM delivery_attempts") == 0
    finally:
        await pool.close()
        await conn.close()


async def test_with_no_chief_above_the_fallback_webhook_gets_the_escalation(
    database: str,
) -> None:
    await build_world(database, starts_at=STARTS, units=tree_with_webhooks(without=("002", "01")))
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=4)
    try:
        await policy_evaluator(conn, database, "c1", POLICY)
        ops = "http://127.0.0.1:9/ops"
        settings = NotifierSettings(database_url=database, webhook_url=ops)
        evaluator = Evaluator(settings, Renderer(), ("webhook",))
        await _lagging_ward(database, evaluator, pool)
        await evaluator.evaluate_at(pool, LAGGING + 2 * DAY + timedelta(minutes=2))
        await evaluator.evaluate_at(pool, LAGGING + 2 * DAY + timedelta(minutes=4))
        rows = await conn.fetch(
            "SELECT recipient, address, status FROM notifications WHERE recipient = '002'"
        )
        assert [tuple(r) for r in rows] == [("002", ops, "pending")]
    finally:
        await pool.close()
        await conn.close()
