"""A unit's own deadline ends every rule of its key, the briefing's rank included: past it
nothing of that key fires or escalates, while the others' go on."""

import json
from datetime import UTC, datetime, timedelta

import asyncpg

from services.aggregator.admin import TargetIn, upsert_targets
from services.check.run import check_round
from services.notifier.evaluator import Evaluator
from services.notifier.render import Renderer
from services.notifier.settings import NotifierSettings
from tests.support.notifier import Feed, progress
from tests.support.world import build_world
from tiendo.database import create_pool

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)  # Wednesday 10:00 local
OWN_DEADLINE = datetime(2023, 5, 20, 3, 0, tzinfo=UTC)  # 00010's, a Saturday
CCCD = "cccd_collected"
POLICY = {
    "behind": {"enabled": True, "for_seconds": 0},
    "at_risk": {"enabled": False},
    "stale": {"enabled": False},
    # the two lowest wards at Monday 08:00 local
    "bottom_rank": {"enabled": True, "n": 2, "level": 3, "for_seconds": 0},
    "escalate_after_seconds": 86400,
    "escalation_levels": 2,
    "digest_times": [],
}


async def test_the_rank_alert_of_a_unit_past_its_own_deadline_closes_and_never_escalates(
    database: str,
) -> None:
    await build_world(database, starts_at=STARTS, indicators=(CCCD,))
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=4)
    try:
        async with conn.transaction():
            own = TargetIn(unit="00010", indicator=CCCD, target=1000, deadline=OWN_DEADLINE)
            await upsert_targets(conn, "c1", [own], "test")
        await conn.execute(
            "INSERT INTO alert_policies (campaign_id, config) VALUES ('c1', $1)", json.dumps(POLICY)
        )
        settings = NotifierSettings(database_url=database)
        evaluator = Evaluator(settings, Renderer(), ("webhook",))
        # 00010 last, 00007 next to last, from before the briefing of 15 May on
        reported = datetime(2023, 5, 12, 3, 0, tzinfo=UTC)
        await Feed(database).send(
            *(
                progress(unit, value, at=reported)
                for unit, value in (("00004", 600), ("00007", 300), ("00010", 50), ("002", 600))
            )
        )

        async def firing(rule: str) -> dict[str, int]:
            rows = await conn.fetch(
                "SELECT unit, escalation_level FROM alerts WHERE rule = $1 AND state = 'firing'",
                rule,
            )
            return {r["unit"]: r["escalation_level"] for r in rows}

        await evaluator.evaluate_at(pool, datetime(2023, 5, 19, 3, 0, tzinfo=UTC))
        before = await firing("bottom_rank")
        assert {"00007", "00010"} <= before.keys()
        # past 00010's deadline, through the briefing of Monday 22 May and two days more
        for at in (
            OWN_DEADLINE + timedelta(minutes=1),
            datetime(2023, 5, 22, 1, 1, tzinfo=UTC),
            datetime(2023, 5, 23, 1, 5, tzinfo=UTC),
            datetime(2023, 5, 24, 1, 5, tzinfo=UTC),
        ):
            await evaluator.evaluate_at(pool, at)
            for rule in ("behind", "bottom_rank"):
                assert "00010" not in (await firing(rule)), (rule, at)
        # the other ranked ward goes on firing, and escalates
        assert (await firing("bottom_rank"))["00007"] == 2
        closed = await conn.fetch(
            "SELECT rule, details->>'deadline_passed' AS passed, escalation_level FROM alerts"
            " WHERE unit = '00010' AND state = 'resolved'"
        )
        assert {r["rule"] for r in closed} == {"behind", "bottom_rank"}
        assert {r["passed"] for r in closed} == {"true"}
        # (escalated once while it ran: fired 19 May, a day before its deadline)
        assert max(r["escalation_level"] for r in closed) <= 1
        # and `tiendo check` holds the same rule: the unit is still in the briefing's
        # bottom N, but no alert is owed it
        found = await check_round(conn, settings, datetime(2023, 5, 24, 1, 5, tzinfo=UTC))
        assert [str(d) for d in found.disagreements] == []
    finally:
        await pool.close()
        await conn.close()
