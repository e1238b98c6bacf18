"""`tiendo check` against a live deployment's database: live progress against `as_of` now
for every key, and the notifier's open alerts against the board's statuses and the
briefing's bottom N. Read only, in one snapshot per round."""

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.check.compare import (
    Disagreement,
    alerts_vs_board,
    figures_vs_board,
    live_vs_history,
    persistent,
    ranks_vs_board,
)
from services.notifier.inputs import in_play
from services.notifier.policy import Policy, effective
from services.notifier.ranks import briefing_bottom
from services.notifier.repository import alerts as alert_sql
from services.notifier.repository import reference as reference_sql
from services.notifier.repository.alerts import AlertKey
from services.notifier.rules import Rule, briefing_slot, held, target_runs
from services.notifier.settings import NotifierSettings
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign, moving
from tiendo.board.figures import judge_campaign
from tiendo.counting import Key, ValueAt
from tiendo.database import Connection
from tiendo.pace import Progress

# The history is read a little past the check's own clock: the host running it may be
# behind the aggregator's. The events table holds nothing ahead of the aggregator's clock
# (it holds such an event until its moment, docs/semantics.md "Events ahead of the
# clock"), so reading past now adds nothing the counters lack.
SKEW = timedelta(minutes=5)
JUDGED = (Rule.STALE, Rule.BEHIND, Rule.AT_RISK)


@dataclass(frozen=True, slots=True)
class Round:
    keys: int
    alerts: int
    disagreements: list[Disagreement]


async def _history(conn: Connection, campaign: Campaign, now: datetime) -> list[Disagreement]:
    codes = await board.codes_up_to_level(conn, 99)
    out: list[Disagreement] = []
    for indicator in campaign.indicators:
        counters = await board.counters_of(conn, campaign.id, indicator, codes)
        live = {c.unit: ValueAt(c.value, c.last_event_at) for c in counters}
        history = await board.values_as_of(
            conn,
            campaign.id,
            indicator,
            [c.unit for c in counters],
            campaign.starts_at,
            min(now + SKEW, campaign.deadline),
            # the history alone, not the rollups kept beside the counters it checks
            history=True,
        )
        out.extend(live_vs_history(campaign.id, indicator, live, history))
    return out


async def _alerts(
    conn: Connection,
    campaign: Campaign,
    policy: Policy,
    now: datetime,
    figures: dict[Key, Progress],
    running: set[Key],
) -> dict[AlertKey, bool]:
    verdicts = await judge_campaign(conn, campaign, now, live=True)
    enabled = policy.enabled()
    conditions: dict[AlertKey, bool] = {}
    for v in verdicts:
        figures[v.key] = v.progress
        if target_runs(v, campaign, now):
            running.add(v.key)
        holds = held(v, campaign, now)
        for rule in JUDGED:
            if rule in enabled:
                conditions[AlertKey(v.key, rule.value)] = holds[rule]
    return conditions


async def _bottom(
    conn: Connection, campaign: Campaign, policy: Policy, now: datetime
) -> list[Key] | None:
    """The board's bottom N at the latest briefing (None: no briefing in the window)."""
    config = policy.bottom_rank
    if Rule.BOTTOM_RANK not in policy.enabled() or config.n <= 0 or campaign.ended(now):
        return None
    slot = briefing_slot(now, campaign.timezone, config.weekday, policy.briefing_time())
    if slot <= campaign.starts_at or slot > campaign.deadline:
        return None
    # the rule's own bottom N, on the level it ranks at that briefing
    found = await briefing_bottom(conn, campaign, slot, config.level, config.n)
    return [Key(campaign.id, b.unit, indicator) for indicator, f in found.items() for b in f.lowest]


async def check_round(
    conn: Connection, settings: NotifierSettings, now: datetime, *, alerts: bool = True
) -> Round:
    """One consistent look (a repeatable-read snapshot) at the whole state; `alerts`
    False: live against history only (a deployment without a notifier)."""
    disagreements: list[Disagreement] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # a campaign whose counters wait to be moved onto the tree it reports on now is
        # not compared: nobody reads them meanwhile, and the notifier waits for it too
        # (docs/units-over-time.md "The moment of a cut-over")
        campaigns = await board.campaigns(conn)
        waiting = moving(campaigns.values(), now)
        campaigns = {c: campaign for c, campaign in campaigns.items() if c not in waiting}
        overrides = await reference_sql.policies(conn)
        open_rows = {
            k: r
            for k, r in (await alert_sql.open_alerts(conn, None)).items()
            if k.key.campaign_id not in waiting
        }
        open_alerts = {k: r["state"] for k, r in open_rows.items()}
        conditions: dict[AlertKey, bool] = {}
        figures: dict[Key, Progress] = {}
        for campaign in campaigns.values():
            disagreements += await _history(conn, campaign, now)
            if not alerts or not in_play(campaign, now):
                continue
            policy = effective(settings, overrides.get(campaign.id, {}))
            running: set[Key] = set()
            conditions.update(await _alerts(conn, campaign, policy, now, figures, running))
            expected = await _bottom(conn, campaign, policy, now)
            if expected is not None:
                # the briefing's bottom N, of the keys whose target still runs: past a
                # unit's own deadline its rank alert is closed (`rules.target_runs`)
                expected = [k for k in expected if k in running]
            firing = [
                k.key
                for k, state in open_alerts.items()
                if k.key.campaign_id == campaign.id
                and k.rule == Rule.BOTTOM_RANK.value
                and state == "firing"
            ]
            if expected is not None:
                disagreements += ranks_vs_board(expected, firing)
        # bottom_rank is compared above, against the briefing's leaderboard
        others = {k: s for k, s in open_alerts.items() if k.rule != Rule.BOTTOM_RANK.value}
        if alerts:
            disagreements += alerts_vs_board(conditions, others)
            disagreements += figures_vs_board(
                figures, {k: _details(r["details"]) for k, r in open_rows.items()}
            )
    return Round(len(figures), len(open_alerts), sorted(disagreements))


def _details(raw: Any) -> dict[str, Any]:
    details: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else dict(raw)
    return details


async def check(dsn: str, settings: NotifierSettings, settle: float, now: datetime) -> Round:
    """Two rounds `settle` seconds apart; only what both see is reported (a change the
    notifier had not judged yet when the first round looked is its lag, not a fault)."""
    conn = await asyncpg.connect(dsn)
    try:
        first = await check_round(conn, settings, now)
        if not first.disagreements or settle <= 0:
            return first
        await asyncio.sleep(settle)
        second = await check_round(conn, settings, now + timedelta(seconds=settle))
        return Round(
            second.keys, second.alerts, persistent(first.disagreements, second.disagreements)
        )
    finally:
        await conn.close()
