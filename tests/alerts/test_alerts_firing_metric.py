"""`tiendo_notifier_alerts_firing` counts each campaign's alerts apart (the overview shows the
chosen campaign's, not every campaign's), has every rule of every campaign at 0 where
nothing fires (a board shows 0, not "no data"), and drops a campaign's series once the
campaign is gone."""

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from services.notifier.evaluator import Evaluator
from services.notifier.metrics import NotifierMetrics
from services.notifier.render import Renderer
from services.notifier.rules import Rule
from services.notifier.settings import NotifierSettings
from tests.support.notifier import BEHIND_ONLY
from tests.support.world import TREE, build_world
from tiendo.database import create_pool

START = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
AT = START + timedelta(days=10)  # nobody has reported: every unit is behind its plan
NOTHING: dict[str, Any] = {
    **{r.value: {"enabled": False} for r in Rule},
    "digest_times": [],
}


def firing(metrics: NotifierMetrics, campaign: str) -> dict[str, float | None]:
    return {
        r.value: metrics.registry.get_sample_value(
            "tiendo_notifier_alerts_firing", {"campaign": campaign, "rule": r.value}
        )
        for r in Rule
    }


async def test_alerts_firing_are_counted_per_campaign_with_every_rule(database: str) -> None:
    await build_world(database, starts_at=START)
    await build_world(database, starts_at=START, campaign_id="c2")
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=2)
    try:
        for campaign, policy in (("c1", BEHIND_ONLY), ("c2", NOTHING)):
            await conn.execute(
                "INSERT INTO alert_policies (campaign_id, config) VALUES ($1, $2)",
                campaign,
                orjson.dumps(policy).decode(),
            )
        metrics = NotifierMetrics()
        evaluator = Evaluator(
            NotifierSettings(database_url=database), Renderer(), ("webhook",), metrics
        )
        await evaluator.evaluate_at(pool, AT)

        # c1: every unit of the tree (the wards' targets summed up to their parents) behind
        c1 = {r.value: 0 for r in Rule} | {"behind": len(TREE)}
        assert firing(metrics, "c1") == c1
        # c2 judges the same units under no rule: 0, and nothing of c1's counted as its
        assert set(firing(metrics, "c2").values()) == {0}

        # a campaign gone leaves no series behind
        await conn.execute("DELETE FROM alert_policies WHERE campaign_id = 'c2'")
        await conn.execute("DELETE FROM campaigns WHERE id = 'c2'")
        await evaluator.evaluate_at(pool, AT + timedelta(minutes=1))
        assert set(firing(metrics, "c2").values()) == {None}
        assert firing(metrics, "c1")["behind"] == len(TREE)
    finally:
        await pool.close()
        await conn.close()
