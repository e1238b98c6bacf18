"""A digest slot a rebuild held back goes with the first full pass after it that gets the
campaign's digests through, however late, once (docs/alerts.md "While the counters are
rebuilt"): a first pass whose digests of the campaign raise does not lose it."""

import json
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

import services.notifier.digests
import services.notifier.evaluator
from services.notifier.evaluator import Evaluator
from services.notifier.render import Renderer
from services.notifier.settings import NotifierSettings
from tests.alerts.test_recount_judges_nothing import (
    AFTER,
    DIGEST_SLOT,
    POLICY,
    STARTS,
    TOPIC_EVENTS,
    _replay,
    _reset_as_a_rebuild_does,
)
from tests.support.notifier import queued, tree_with_webhooks
from tests.support.world import build_world
from tiendo.counting import apply_events
from tiendo.database import create_pool


async def _digests(conn: asyncpg.Connection) -> list[tuple[str, datetime]]:
    return sorted(
        (m.recipient, datetime.fromisoformat(m.body["slot"]))
        for m in await queued(conn)
        if m.kind == "digest"
    )


async def test_a_held_back_slot_outlives_a_first_pass_whose_digests_fail(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await build_world(database, starts_at=STARTS, units=tree_with_webhooks())
    conn = await asyncpg.connect(database)
    pool = await create_pool(database.replace("://tiendo@", "://tiendo_notifier@", 1), max_size=4)
    try:
        await conn.execute(
            "INSERT INTO alert_policies (campaign_id, config) VALUES ('c1', $1)",
            json.dumps(POLICY),
        )
        evaluator = Evaluator(NotifierSettings(database_url=database), Renderer(), ("webhook",))
        await apply_events(conn, TOPIC_EVENTS)
        await _reset_as_a_rebuild_does(conn)
        # the 07:00 slot falls during the replay: the pass a minute after it waits
        waited = await evaluator.evaluate_at(pool, DIGEST_SLOT + timedelta(minutes=1))
        assert waited.recounting is not None
        await _replay(conn, 0, len(TOPIC_EVENTS))

        # the first pass after the replay, hours past the slot's grace: its digests of the
        # campaign raise (once)
        real = services.notifier.digests.queue_digests
        failures: list[datetime] = []

        async def failing_once(*args: Any) -> None:
            if not failures:
                failures.append(args[4])  # the pass's moment
                raise RuntimeError("a digest of c1 cannot be rendered")
            await real(*args)

        monkeypatch.setattr(services.notifier.evaluator, "queue_digests", failing_once)
        first = await evaluator.evaluate_at(pool, AFTER)
        assert first.recounting is None
        assert failures == [AFTER]
        assert await _digests(conn) == []

        # the next pass gets through: the held-back slot goes, to every chief, once
        await evaluator.evaluate_at(pool, AFTER + timedelta(minutes=5))
        sent = await _digests(conn)
        assert sent == [(u, DIGEST_SLOT) for u in ("00004", "00007", "00010", "001", "002", "01")]
        await evaluator.evaluate_at(pool, AFTER + timedelta(minutes=10))
        assert await _digests(conn) == sent
    finally:
        await pool.close()
        await conn.close()
