"""The notifier's feed passes reuse each unit's value one run-rate window ago from the last
full pass (`TIENDO_NOTIFIER_RUN_RATE_CACHE_SECONDS`). A report dated before the window's
start moves that value: the next feed pass, a minute later, judges the run rate, the
projection and `at_risk` of the keys it moved as the board does at that moment (live and
`as_of` alike), and its alerts carry those figures. An on-time report of another indicator
leaves that indicator's kept values in use. The reports are applied by another connection,
as the aggregator's apply would: the notifier learns of them from PostgreSQL alone, through
its role's views."""

import json
from datetime import datetime
from typing import Any

import asyncpg

from services.notifier.messages import details
from tests.boards.test_window_values_after_late_reports import NEXT, NOW, START, C, E, _late
from tests.boards.test_window_values_after_late_reports import _history as history
from tests.support.notifier import BEHIND_ONLY, policy_evaluator
from tests.support.world import build_world
from tiendo.board import repository as board
from tiendo.board.figures import Verdict, judge_campaign
from tiendo.counting import Key, apply_events
from tiendo.database import create_pool

POLICY = {**BEHIND_ONLY, "at_risk": {"enabled": True, "for_seconds": 0}}
WINDOWED = ("run_rate_7d", "projected_completion", "status")


async def _alerted(conn: asyncpg.Connection) -> dict[tuple[Key, str], dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT campaign_id, unit, indicator, rule, details FROM alerts WHERE state <> 'resolved'"
    )
    return {
        (Key(r["campaign_id"], r["unit"], r["indicator"]), r["rule"]): json.loads(r["details"])
        for r in rows
    }


async def _judged(conn: asyncpg.Connection, at: datetime, *, live: bool) -> dict[Key, Verdict]:
    campaign = (await board.campaigns(conn))["c1"]
    return {v.key: v for v in await judge_campaign(conn, campaign, at, live=live)}


def _shown(d: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(d[f] for f in WINDOWED)


async def test_a_feed_pass_after_a_report_from_before_the_window_judges_its_start_anew(
    database: str,
) -> None:
    await build_world(
        database,
        starts_at=START,
        indicators=(C, E),
        targets={"00004": 200_000, "00007": 200_000, "00010": 1000},
    )
    conn = await asyncpg.connect(database)
    pool = await create_pool(database.replace("://tiendo@", "://tiendo_notifier@", 1), max_size=4)
    try:
        await apply_events(conn, history())
        evaluator = await policy_evaluator(conn, database, "c1", POLICY)
        # the full pass reads every start value anew and keeps them
        await evaluator.evaluate_at(pool, NOW)
        before = await _alerted(conn)

        outcome = await apply_events(conn, _late())
        await evaluator.evaluate_at(pool, NEXT, outcome.changed)
        alerted = await _alerted(conn)
        live = await _judged(conn, NEXT, live=True)
        history_now = await _judged(conn, NEXT, live=False)

        moved = {k for k in outcome.changed if k.indicator == C}
        assert {k.unit for k in moved} == {"01", "001", "00004", "00007"}
        shown = {(k, rule): d for (k, rule), d in alerted.items() if k in moved}
        # every moved key is alerted on (behind, and at risk where its rate says so)
        assert {k for k, _ in shown} == moved
        for (key, rule), d in shown.items():
            assert live[key].progress == history_now[key].progress, key
            fresh = details(live[key], None)
            assert _shown(d) == _shown(fresh), (key, rule)
            assert d["value"] == live[key].progress.value

        # the on-time report: the kept start values of its indicator stay in use (the
        # city's busy ward makes the start a minute earlier show in its rate)
        city = Key("c1", "01", E)
        assert city in outcome.changed
        [(_, d)] = [(k, d) for (k, rule), d in alerted.items() if k == city and rule == "behind"]
        assert d["value"] == before[city, "behind"]["value"] + 40
        assert d["run_rate_7d"] != details(live[city], None)["run_rate_7d"]
    finally:
        await pool.close()
        await conn.close()
