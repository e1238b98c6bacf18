"""A digest slot is one campaign's: what another campaign queued in the same slot never
counts as sent for it, whatever characters the two ids share."""

import json
from datetime import UTC, datetime

import asyncpg

from services.notifier.evaluator import Evaluator
from services.notifier.render import Renderer
from services.notifier.settings import NotifierSettings
from tests.support.notifier import tree_with_contacts
from tests.support.world import build_world
from tiendo.database import create_pool

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
DIGESTS_ONLY = {
    "behind": {"enabled": False},
    "at_risk": {"enabled": False},
    "stale": {"enabled": False},
    "bottom_rank": {"enabled": False},
    "digest_times": ["07:00"],
}


class Nowhere:
    """Webhook addresses nobody answers: the test counts what is queued, not delivered."""

    port = 9

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:9/{path}"


async def test_a_campaign_whose_id_differs_by_an_underscore_gets_its_own_digests(
    database: str,
) -> None:
    # `_` matches any one character in a LIKE pattern: `c_1`'s slot once matched the keys
    # `c-1` had just queued, and its chiefs got no digest. Sorted by id, `c-1` goes first.
    units = tree_with_contacts(Nowhere(), chat=False)  # type: ignore[arg-type]
    campaigns = ("c-1", "c_1", "cz1")
    for campaign in campaigns:
        await build_world(database, starts_at=STARTS, campaign_id=campaign, units=units)
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=4)
    try:
        for campaign in campaigns:
            await conn.execute(
                "INSERT INTO alert_policies (campaign_id, config) VALUES ($1, $2)",
                campaign,
                json.dumps(DIGESTS_ONLY),
            )
        evaluator = Evaluator(NotifierSettings(database_url=database), Renderer(), ("webhook",))
        await evaluator.evaluate_at(pool, datetime(2023, 5, 21, 0, 1, tzinfo=UTC))  # 07:01 local
        # a second pass in the slot's grace queues nothing again
        await evaluator.evaluate_at(pool, datetime(2023, 5, 21, 0, 6, tzinfo=UTC))
        rows = await conn.fetch(
            "SELECT campaign_id, recipient, count(*) AS n FROM notifications"
            " WHERE kind = 'digest' GROUP BY 1, 2"
        )
        chiefs = {c: {r["recipient"] for r in rows if r["campaign_id"] == c} for c in campaigns}
        assert chiefs["c-1"], "no digest at all: the test proves nothing"
        assert chiefs["c_1"] == chiefs["c-1"] == chiefs["cz1"]
        assert {r["n"] for r in rows} == {1}
    finally:
        await pool.close()
        await conn.close()
