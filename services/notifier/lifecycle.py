"""Judge → lifecycle: one alert's step under its row lock (pending → firing → resolved),
the group memberships it causes, and escalation to the chiefs above."""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.notifier.messages import Outgoing
from services.notifier.metrics import NotifierMetrics
from services.notifier.policy import Policy
from services.notifier.repository import alerts as alert_sql
from services.notifier.repository import groups as group_sql
from services.notifier.repository import reference as reference_sql
from services.notifier.repository.alerts import AlertKey
from services.notifier.rules import Alert, AlertState, Change, Rule, escalation_level, step
from services.notifier.summary import AlertChange, Summary
from tiendo.board.campaign import Campaign
from tiendo.counting import Key
from tiendo.database import Connection
from tiendo.logs import get_logger

log = get_logger(__name__)


# A state by its stored name: a look-up, where `AlertState(name)` runs the enum's call
# machinery (a full pass steps a quarter of a million open alerts).
_STATES = {s.value: s for s in AlertState}


def alert_of(row: asyncpg.Record | None) -> Alert | None:
    if row is None:
        return None
    return Alert(_STATES[row["state"]], row["since"], row["fired_at"], row["resolved_at"])


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
        current = await alert_sql.lock_open_alert(conn, key, rule.value)
        if current is not None and current["evaluated_through"] > at:
            return Change.NONE  # a later evaluation already decided
        if current is None and await alert_sql.resolved_since(conn, key, rule.value, at):
            return Change.NONE  # judged at an earlier moment than the evaluation that closed it
        new, change = step(alert_of(current), holds, at, for_)
        if change is Change.NONE:
            return change
        if change is Change.DROPPED:
            assert current is not None
            await alert_sql.delete_alert(conn, current["id"])
            return change
        assert new is not None
        if current is None:
            alert_id = await alert_sql.insert_alert(conn, key, rule.value, new, at, payload)
            if alert_id is None:
                return Change.NONE  # another replica opened it a moment ago
        else:
            alert_id = current["id"]
            await alert_sql.update_alert(conn, alert_id, new, at, payload)
        if change is Change.FIRED:
            await group_sql.add_member(conn, key.campaign_id, key.unit, alert_id, 0, at)
        elif change is Change.RESOLVED:
            # The groups this alert is in are locked first, as the planner locks them:
            # a resolution never lands between the planner's read of a group and its
            # "told" marks (the chief would be told it fires and never that it cleared).
            await group_sql.lock_groups_of(conn, alert_id)
            await group_sql.resolve_members(conn, alert_id, at)
    _logged(key, rule, change, at)
    return change


# Alerts stepped in one transaction by `apply_changes`.
BATCH = 500


@dataclass(frozen=True, slots=True)
class Todo:
    """An alert the judge expects to change: whether its rule holds, the figures it will
    show, and the change expected (another replica may have moved it meanwhile)."""

    key: Key
    rule: Rule
    holds: bool
    details: dict[str, Any]
    expected: Change


async def apply_changes(
    conn: Connection,
    todo: Sequence[Todo],
    policies: dict[str, Policy],
    fallback: Policy,
    at: datetime,
) -> list[AlertChange]:
    """Step many alerts, each under its row lock as `apply_change` does, with the same
    guards. Alerts expected to open, fire or drop go in batches of `BATCH` per transaction
    (rows locked and inserted in one fixed order, groups created beforehand, no group
    locks), so that a first pass over a national tree is not one transaction per alert;
    a resolution (it locks groups) or a step other than the one expected under the lock
    (another replica moved the alert) is then stepped alone."""
    batched = sorted(
        (t for t in todo if t.expected is not Change.RESOLVED), key=lambda t: (t.key, t.rule.value)
    )
    alone = [t for t in todo if t.expected is Change.RESOLVED]
    groups = await group_sql.create_groups(
        conn,
        sorted({(t.key.campaign_id, t.key.unit) for t in batched if t.expected is Change.FIRED}),
    )
    out: list[AlertChange] = []
    for start in range(0, len(batched), BATCH):
        done, later = await _apply_batch(
            conn, batched[start : start + BATCH], policies, fallback, groups, at
        )
        out.extend(done)
        alone.extend(later)
    for t in alone:
        policy = policies.get(t.key.campaign_id, fallback)
        change = await apply_change(conn, t.key, t.rule, t.holds, t.details, policy, at)
        if change is not Change.NONE:
            out.append(AlertChange(t.key, t.rule, change))
    return out


async def _apply_batch(
    conn: Connection,
    batch: Sequence[Todo],
    policies: dict[str, Policy],
    fallback: Policy,
    groups: dict[tuple[str, str], int],
    at: datetime,
) -> tuple[list[AlertChange], list[Todo]]:
    done: list[AlertChange] = []
    later: list[Todo] = []
    inserts: list[tuple[AlertKey, Alert, str, Todo]] = []
    updates: list[tuple[int, Alert, str]] = []
    deletes: list[int] = []
    members: list[tuple[int, int]] = []
    async with conn.transaction():
        keys = [AlertKey(t.key, t.rule.value) for t in batch]
        locked = await alert_sql.lock_open_alerts(conn, keys)
        closed = await alert_sql.resolved_since_many(conn, [k for k in keys if k not in locked], at)
        for item, okey in zip(batch, keys, strict=True):
            key, rule = item.key, item.rule
            current = locked.get(okey)
            if current is not None and current["evaluated_through"] > at:
                continue  # a later evaluation already decided
            if current is None and okey in closed:
                continue  # judged at an earlier moment than the evaluation that closed it
            new, change = step(
                alert_of(current),
                item.holds,
                at,
                policies.get(key.campaign_id, fallback).rule(rule).for_,
            )
            if change is Change.NONE:
                continue
            if change is not item.expected or (
                change is Change.FIRED and (key.campaign_id, key.unit) not in groups
            ):
                later.append(item)
                continue
            payload = json.dumps(item.details)
            if change is Change.DROPPED:
                assert current is not None
                deletes.append(current["id"])
            elif current is None:
                assert new is not None
                inserts.append((okey, new, payload, item))
                continue
            else:
                assert new is not None
                updates.append((current["id"], new, payload))
                if change is Change.FIRED:
                    members.append((groups[key.campaign_id, key.unit], current["id"]))
            done.append(AlertChange(key, rule, change))
        ids = await alert_sql.insert_alerts(conn, [(k, a, p) for k, a, p, _ in inserts], at)
        for okey, new, _, item in inserts:
            if okey not in ids:
                continue  # another replica opened it a moment ago
            fired = new.state is AlertState.FIRING
            if fired:
                members.append((groups[item.key.campaign_id, item.key.unit], ids[okey]))
            done.append(AlertChange(item.key, item.rule, Change.FIRED if fired else Change.OPENED))
        await alert_sql.update_alerts(conn, updates, at)
        await alert_sql.delete_alerts(conn, deletes)
        await group_sql.add_members(conn, sorted(members), at)
    for c in done:
        _logged(c.key, c.rule, c.change, at)
    return done, later


def _logged(key: Key, rule: Rule, change: Change, at: datetime) -> None:
    log.info(
        "alert_" + change.value,
        campaign=key.campaign_id,
        unit=key.unit,
        indicator=key.indicator,
        rule=rule.value,
        at=at.isoformat(),
    )


async def escalate(
    conn: Connection,
    policies: dict[str, Policy],
    campaigns: dict[str, Campaign],
    at: datetime,
    summary: Summary,
    metrics: NotifierMetrics,
    outgoing: Outgoing,
) -> None:
    """Add alerts firing long enough to the groups of the chiefs above their unit; never
    after the campaign's deadline (its alerts are closing).

    Each level is one more chief: level n goes to the nearest unit above the last one the
    alert reached (above its own unit at level 1) that has a chief, one with a contact of
    their own on a channel the notifier sends on (`Outgoing.reaches`). A unit without one
    is passed over, not counted (the level used to go to it, reached nobody, and the chief
    above heard of the alert only one `escalate_after` later). When no unit above has a
    chief, the operators' fallback webhook, if set, gets it through the parent's group (as
    it stands in for any chief without a webhook); otherwise a failed row in the delivery
    log says nobody was told (docs/alerts.md "Escalation")."""
    running = [
        (c, p.escalate_after, p.escalation_levels)
        for c, p in policies.items()
        if c in campaigns and not campaigns[c].ended(at)
    ]
    for a in await alert_sql.escalation_due(conn, running, at):
        policy = policies[a["campaign_id"]]
        target = escalation_level(
            a["fired_at"], at, policy.escalate_after, policy.escalation_levels
        )
        if target <= a["escalation_level"]:
            continue
        async with conn.transaction():
            locked = await alert_sql.lock_firing_alert(conn, a["id"])
            if locked is None or locked["escalation_level"] >= target:
                continue  # resolved meanwhile, or another replica escalated it
            above = list(reversed(await reference_sql.ancestors(conn, a["unit"])))
            chiefs = await reference_sql.recipients(conn, above)
            with_chief = [u for u in above if outgoing.reaches(chiefs.get(u))]
            # climb on from the highest unit told so far: a chief added meanwhile below it
            # is not told of what already went past (docs/alerts.md)
            told = await group_sql.escalated_to(conn, a["id"])
            reached = max((above.index(u) for u in told if u in above), default=-1)
            for level in range(locked["escalation_level"] + 1, target + 1):
                # Due since the moment the level was reached, however late it is seen.
                due = min(at, locked["fired_at"] + policy.escalate_after * level)
                nearest = next((u for u in with_chief if above.index(u) > reached), None)
                if nearest is None and reached < 0 and above:
                    await _nobody_above(conn, locked, above, level, due, policy, outgoing)
                if nearest is None:
                    break  # the top chief has it, or nobody above can be told
                passed_over = above[reached + 1 : above.index(nearest)]
                reached = above.index(nearest)
                await group_sql.add_member(conn, a["campaign_id"], nearest, a["id"], level, due)
                summary.escalations.append((a["id"], nearest, level))
                metrics.escalations.inc()
                log.info(
                    "alert_escalated",
                    alert_id=a["id"],
                    unit=a["unit"],
                    recipient=nearest,
                    level=level,
                    passed_over=passed_over,  # units above without a chief
                )
            await alert_sql.set_escalation(conn, a["id"], target, at)


async def _nobody_above(
    conn: Connection,
    alert: asyncpg.Record,
    above: Sequence[str],
    level: int,
    due: datetime,
    policy: Policy,
    outgoing: Outgoing,
) -> None:
    """No unit above the alert's has a chief. With the operators' fallback webhook the
    parent's group takes it, as before (that webhook stands in for chiefs without one);
    without, the escalation is recorded as failed in the delivery log (visible in
    `GET /v1/notifications`, counted as `no_address`), not dropped with a log line."""
    parent = above[0]
    if outgoing.reaches(None, fallback=True):
        await group_sql.add_member(conn, alert["campaign_id"], parent, alert["id"], level, due)
        return
    error = (
        f"no unit above {alert['unit']} has a chief with a contact on a channel the "
        f"notifier sends on; escalation level {level} reached nobody"
    )
    await outgoing.unreached(
        conn,
        kind="escalation",
        message_id=f"{alert['campaign_id']}/{parent}/a{alert['id']}.e{level}",
        recipient_code=parent,
        campaign_id=alert["campaign_id"],
        alert_ids=[alert["id"]],
        error=error,
        body={
            "kind": "escalation",
            "alert_id": alert["id"],
            "campaign": {"id": alert["campaign_id"]},
            "unit": alert["unit"],
            "indicator": alert["indicator"],
            "rule": alert["rule"],
            "escalation_level": level,
            "subject": f"escalation of {alert['unit']} reached nobody",
            "text": error,
        },
        language=policy.language,
    )
