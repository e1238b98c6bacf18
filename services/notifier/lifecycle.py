"""Judge → lifecycle: one alert's step under its row lock (pending → firing → resolved),
the group memberships it causes, and escalation to the chiefs above."""

import json
from datetime import datetime
from typing import Any

import asyncpg

from services.notifier import repository
from services.notifier.metrics import NotifierMetrics
from services.notifier.policy import Policy
from services.notifier.rules import Alert, AlertState, Change, Rule, escalation_level, step
from services.notifier.summary import Key, Summary
from tiendo.board.campaign import Campaign
from tiendo.database import Connection
from tiendo.logs import get_logger

log = get_logger(__name__)


def alert_of(row: asyncpg.Record | None) -> Alert | None:
    if row is None:
        return None
    return Alert(AlertState(row["state"]), row["since"], row["fired_at"], row["resolved_at"])


async def apply_change(
    conn: Connection,
    key: Key,
    rule: Rule,
    holds: bool,
    details: dict[str, Any],
    policy: Policy,
    at: datetime,
) -> Change:
    """Step one alert under its row lock and record the change (own transaction)."""
    payload = json.dumps(details)
    for_ = policy.rule(rule).for_
    async with conn.transaction():
        current = await repository.lock_open_alert(conn, key, rule.value)
        if current is not None and current["last_evaluated_at"] > at:
            return Change.NONE  # a later evaluation already decided
        if current is None and await repository.resolved_since(conn, key, rule.value, at):
            return Change.NONE  # judged at an earlier moment than the evaluation that closed it
        new, change = step(alert_of(current), holds, at, for_)
        if change is Change.NONE:
            return change
        if change is Change.DROPPED:
            assert current is not None
            await repository.delete_alert(conn, current["id"])
            return change
        assert new is not None
        if current is None:
            alert_id = await repository.insert_alert(conn, key, rule.value, new, at, payload)
            if alert_id is None:
                return Change.NONE  # another replica opened it a moment ago
        else:
            alert_id = current["id"]
            await repository.update_alert(conn, alert_id, new, at, payload)
        if change is Change.FIRED:
            await repository.add_member(conn, key[0], key[1], alert_id, 0, at)
        elif change is Change.RESOLVED:
            # The groups this alert is in are locked first, as the planner locks them:
            # a resolution never lands between the planner's read of a group and its
            # "told" marks (the chief would be told it fires and never that it cleared).
            await repository.lock_groups_of(conn, alert_id)
            await repository.resolve_members(conn, alert_id, at)
    log.info(
        "alert_" + change.value,
        campaign=key[0],
        unit=key[1],
        indicator=key[2],
        rule=rule.value,
        at=at.isoformat(),
    )
    return change


async def escalate(
    conn: Connection,
    policies: dict[str, Policy],
    campaigns: dict[str, Campaign],
    at: datetime,
    summary: Summary,
    metrics: NotifierMetrics,
) -> None:
    """Add alerts firing long enough to the groups of the chiefs above their unit; never
    after the campaign's deadline (its alerts are closing)."""
    for a in await repository.firing(conn):
        campaign = campaigns.get(a["campaign_id"])
        policy = policies.get(a["campaign_id"])
        if campaign is None or policy is None or campaign.ended(at):
            continue
        target = escalation_level(
            a["fired_at"], at, policy.escalate_after, policy.escalation_levels
        )
        if target <= a["escalation_level"]:
            continue
        async with conn.transaction():
            locked = await repository.lock_firing_alert(conn, a["id"])
            if locked is None or locked["escalation_level"] >= target:
                continue  # resolved meanwhile, or another replica escalated it
            unit = await repository.unit(conn, a["unit"])
            ancestors: list[str] = list(unit["ancestors"]) if unit else []
            for level in range(locked["escalation_level"] + 1, target + 1):
                if level > len(ancestors):
                    break
                recipient = ancestors[-level]
                # Due since the moment the level was reached, however late it is seen.
                due = min(at, locked["fired_at"] + policy.escalate_after * level)
                await repository.add_member(conn, a["campaign_id"], recipient, a["id"], level, due)
                summary.escalations.append((a["id"], recipient, level))
                metrics.escalations.inc()
                log.info(
                    "alert_escalated",
                    alert_id=a["id"],
                    unit=a["unit"],
                    recipient=recipient,
                    level=level,
                )
            await repository.set_escalation(conn, a["id"], target, at)
