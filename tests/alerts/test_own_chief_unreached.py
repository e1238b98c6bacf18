"""A message to a unit's own chief who has no contact on a channel the notifier sends on
(docs/alerts.md "Nobody to tell"): each message that reaches nobody is a failed row of the
delivery log (channel `none`, `last_error` why), counted as `no_address`, once per message
(a change, a repeat slot, the resolved notice) and never again at the passes between; the
operators' fallback webhook takes it instead when configured. Until 7 December 2026 such a
message left a log line and a count, and no row: the chief's alert was told to nobody, and
the delivery log did not say so."""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.notifier.evaluator import Evaluator
from services.notifier.metrics import NotifierMetrics
from services.notifier.render import Renderer
from services.notifier.settings import NotifierSettings
from tests.support.notifier import BEHIND_ONLY, Feed, progress, tree_with_webhooks
from tests.support.world import build_world
from tiendo.database import create_pool

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)  # Wednesday 10:00 local
LAGGING = STARTS + timedelta(days=10)  # 00010 at 50 of the 200 planned
GROUP_WAIT = timedelta(seconds=61)
DAY = timedelta(days=1)
CHIEFLESS = "00010"


@dataclass
class World:
    conn: asyncpg.Connection
    pool: asyncpg.Pool
    database: str

    def evaluator(self, webhook_url: str | None = None) -> tuple[Evaluator, NotifierMetrics]:
        metrics = NotifierMetrics()
        settings = NotifierSettings(database_url=self.database, webhook_url=webhook_url)
        return Evaluator(settings, Renderer(), ("webhook",), metrics), metrics

    async def rows(self, recipient: str = CHIEFLESS) -> list[asyncpg.Record]:
        return list(
            await self.conn.fetch(
                "SELECT dedup_key, kind, channel, address, status, attempts, last_error, "
                "group_id, body FROM notifications WHERE recipient = $1 ORDER BY id",
                recipient,
            )
        )


@pytest.fixture
async def world(database: str) -> AsyncIterator[World]:
    """Every chief with a webhook but ward 00010's, which has no contact at all; 00010
    lags from `LAGGING` on, the others keep pace (district 002 reports 250 of its own)."""
    await build_world(database, starts_at=STARTS, units=tree_with_webhooks(without=(CHIEFLESS,)))
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=4)
    try:
        await conn.execute(
            "INSERT INTO alert_policies (campaign_id, config) VALUES ('c1', $1)",
            json.dumps(BEHIND_ONLY),
        )
        await Feed(database).send(
            *(
                progress(unit, value, at=LAGGING)
                for unit, value in (("00004", 300), ("00007", 300), (CHIEFLESS, 50), ("002", 250))
            )
        )
        yield World(conn, pool, database)
    finally:
        await pool.close()
        await conn.close()


def _no_address(metrics: NotifierMetrics) -> float:
    value = metrics.registry.get_sample_value(
        "tiendo_notifier_notifications_total", {"channel": "none", "result": "no_address"}
    )
    return value or 0.0


async def test_each_message_to_a_chiefless_unit_is_one_failed_row_of_the_log(
    world: World,
) -> None:
    w = world
    evaluator, metrics = w.evaluator()
    await evaluator.evaluate_at(w.pool, LAGGING)
    await evaluator.evaluate_at(w.pool, LAGGING + GROUP_WAIT)
    [told] = await w.rows()
    assert told["dedup_key"] == f"c1/{CHIEFLESS}/1/none"
    assert (told["kind"], told["channel"], told["address"], told["status"]) == (
        "firing",
        "none",
        "",
        "failed",
    )
    assert told["attempts"] == 0
    assert told["group_id"] is not None  # the group's message, as every other
    assert f"{CHIEFLESS} has no contact" in told["last_error"]
    assert "reached nobody" in told["last_error"]
    body = json.loads(told["body"])
    assert body["kind"] == "firing"
    assert [a["unit"] for a in body["firing"]] == [CHIEFLESS]
    assert "link" not in body  # no chief to hold one: none was made
    assert await w.conn.fetchval("SELECT count(*) FROM links WHERE recipient = $1", CHIEFLESS) == 0
    assert _no_address(metrics) == 1

    # the passes in between record nothing more, count nothing more
    for later in (timedelta(minutes=5), timedelta(hours=1), timedelta(hours=12)):
        await evaluator.evaluate_at(w.pool, LAGGING + later)
    assert len(await w.rows()) == 1
    assert _no_address(metrics) == 1

    # the repeat slot: one row of its own
    await evaluator.evaluate_at(w.pool, LAGGING + DAY + 2 * GROUP_WAIT)
    await evaluator.evaluate_at(w.pool, LAGGING + DAY + 3 * GROUP_WAIT)
    assert [(r["kind"], r["status"]) for r in await w.rows()] == [
        ("firing", "failed"),
        ("repeat", "failed"),
    ]

    # the ward catches up: the resolved notice, one row
    caught_up = LAGGING + DAY + 4 * GROUP_WAIT
    await Feed(w.database).send(progress(CHIEFLESS, 400, at=caught_up))
    await evaluator.evaluate_at(w.pool, caught_up)
    await evaluator.evaluate_at(w.pool, caught_up + GROUP_WAIT)
    await evaluator.evaluate_at(w.pool, caught_up + 2 * GROUP_WAIT)
    rows = await w.rows()
    assert [(r["kind"], r["channel"], r["status"]) for r in rows] == [
        ("firing", "none", "failed"),
        ("repeat", "none", "failed"),
        ("resolved", "none", "failed"),
    ]
    assert _no_address(metrics) == 3
    # never claimed for delivery, and the other chiefs were told as usual
    assert await w.conn.fetchval("SELECT count(*) FROM delivery_attempts") == 0
    assert await w.conn.fetchval("SELECT count(*) FROM notifications WHERE channel = 'none'") == 3


async def test_the_fallback_webhook_takes_the_message_of_a_chiefless_unit(
    world: World,
) -> None:
    w = world
    ops = "http://127.0.0.1:9/ops"
    evaluator, metrics = w.evaluator(webhook_url=ops)
    await evaluator.evaluate_at(w.pool, LAGGING)
    await evaluator.evaluate_at(w.pool, LAGGING + GROUP_WAIT)
    [copy] = await w.rows()
    assert (copy["channel"], copy["address"], copy["status"]) == ("webhook", ops, "pending")
    assert _no_address(metrics) == 0
