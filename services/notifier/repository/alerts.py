"""Alert instances: open alerts, their lifecycle steps under row locks, escalation."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from tiendo.counting import Key
from tiendo.database import Connection


@dataclass(frozen=True, slots=True, order=True)
class AlertKey:
    """One alert instance: a rule on a (campaign, unit, indicator); at most one is open."""

    key: Key
    rule: str


def _columns(keys: Sequence[Key]) -> list[list[str]]:
    return [[k.campaign_id for k in keys], [k.unit for k in keys], [k.indicator for k in keys]]


def _key_columns(keys: Sequence[AlertKey]) -> list[list[str]]:
    return [*_columns([k.key for k in keys]), [k.rule for k in keys]]


def _alert_key(r: asyncpg.Record) -> AlertKey:
    return AlertKey(Key(r["campaign_id"], r["unit"], r["indicator"]), r["rule"])


# `version` (the row's xmin) tells whether an alert was written since a pass read it.
SELECT_OPEN_ALERTS = """
SELECT *, xmin::text::bigint AS version FROM alerts
WHERE state <> 'resolved' AND ($1::text[] IS NULL OR campaign_id = ANY ($1))
"""


SELECT_OPEN_ALERTS_KEYS = """
SELECT a.*, a.xmin::text::bigint AS version FROM alerts a
JOIN unnest($1::text[], $2::text[], $3::text[]) AS k (c, u, i)
  ON a.campaign_id = k.c AND a.unit = k.u AND a.indicator = k.i
WHERE a.state <> 'resolved'
"""


# An alert's last evaluation: its own stamp or its campaign's latest full pass.
_EVALUATED_THROUGH = """CASE WHEN a.state = 'resolved' THEN a.last_evaluated_at
     ELSE greatest(a.last_evaluated_at, (SELECT w.evaluated_at FROM alert_evaluations w
                                         WHERE w.campaign_id = a.campaign_id)) END"""


# Evaluations of one key are serialised by locking its open alert row (or, before one
# exists, by the unique index on open alerts), so two replicas cannot both fire it.
SELECT_OPEN_ALERT = f"""
SELECT a.*, {_EVALUATED_THROUGH} AS evaluated_through FROM alerts a
WHERE campaign_id = $1 AND unit = $2 AND indicator = $3 AND rule = $4 AND state <> 'resolved'
FOR UPDATE OF a
"""


# Many open alerts ((campaign, unit, indicator, rule) columns $1-$4) locked in one fixed
# order, so that replicas stepping overlapping batches cannot deadlock.
LOCK_OPEN_ALERTS = f"""
SELECT a.*, {_EVALUATED_THROUGH} AS evaluated_through FROM alerts a
JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS k (c, u, i, r)
  ON a.campaign_id = k.c AND a.unit = k.u AND a.indicator = k.i AND a.rule = k.r
WHERE a.state <> 'resolved'
ORDER BY a.campaign_id, a.unit, a.indicator, a.rule
FOR UPDATE OF a
"""


# Which of the keys $1-$4 an evaluation after $5 resolved (RESOLVED_SINCE, many at once).
RESOLVED_SINCE_MANY = """
SELECT DISTINCT k.c, k.u, k.i, k.r
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS k (c, u, i, r)
JOIN alerts a ON a.campaign_id = k.c AND a.unit = k.u AND a.indicator = k.i AND a.rule = k.r
WHERE a.state = 'resolved' AND a.resolved_at > $5
"""


# INSERT_ALERT for many, in the same fixed order as LOCK_OPEN_ALERTS (a replica waiting on
# another's new row never holds one that the other waits on).
INSERT_ALERTS = """
INSERT INTO alerts (campaign_id, unit, indicator, rule, state, since, fired_at,
                    last_evaluated_at, details)
SELECT c, u, i, r, s, since, fired, $9, d
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
            $7::timestamptz[], $8::jsonb[]) AS t (c, u, i, r, s, since, fired, d)
ORDER BY c, u, i, r
ON CONFLICT (campaign_id, unit, indicator, rule) WHERE state <> 'resolved' DO NOTHING
RETURNING id, campaign_id, unit, indicator, rule
"""


UPDATE_ALERTS = """
UPDATE alerts a SET state = t.s, fired_at = t.fired, resolved_at = NULL,
                    last_evaluated_at = $5, details = t.d
FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::jsonb[]) AS t (id, s, fired, d)
WHERE a.id = t.id
"""


DELETE_ALERTS = "DELETE FROM alerts WHERE id = ANY ($1::bigint[])"


# A full pass at $2 of campaigns $1 (see migration 004): written before its changes.
MARK_EVALUATED = """
INSERT INTO alert_evaluations (campaign_id, evaluated_at)
SELECT c, $2 FROM unnest($1::text[]) AS c
ORDER BY c
ON CONFLICT (campaign_id) DO UPDATE
SET evaluated_at = greatest(alert_evaluations.evaluated_at, EXCLUDED.evaluated_at)
"""


INSERT_ALERT = """
INSERT INTO alerts (campaign_id, unit, indicator, rule, state, since, fired_at,
                    last_evaluated_at, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (campaign_id, unit, indicator, rule) WHERE state <> 'resolved' DO NOTHING
RETURNING id
"""


UPDATE_ALERT = """
UPDATE alerts SET state = $2, fired_at = $3, resolved_at = $4, last_evaluated_at = $5,
                  details = $6
WHERE id = $1
"""


# A bulk "still the same" after an evaluation: figures refreshed, no lifecycle change;
# never over the figures of a later evaluation.
TOUCH_ALERTS = """
UPDATE alerts a SET last_evaluated_at = $2, details = t.details
FROM unnest($1::bigint[], $3::jsonb[]) AS t (id, details)
WHERE a.id = t.id AND a.last_evaluated_at <= $2 AND a.state <> 'resolved'
  AND NOT EXISTS (SELECT 1 FROM alert_evaluations w
                  WHERE w.campaign_id = a.campaign_id AND w.evaluated_at > $2)
RETURNING a.id, a.xmin::text::bigint AS version
"""


DELETE_ALERT = "DELETE FROM alerts WHERE id = $1"


RESOLVED_SINCE = """
SELECT EXISTS (SELECT 1 FROM alerts
               WHERE campaign_id = $1 AND unit = $2 AND indicator = $3 AND rule = $4
                 AND state = 'resolved' AND resolved_at > $5)
"""


LOCK_FIRING_ALERT = "SELECT * FROM alerts WHERE id = $1 AND state = 'firing' FOR UPDATE"


SET_ESCALATION = "UPDATE alerts SET escalation_level = $2, escalated_at = $3 WHERE id = $1"


# Firing alerts due a higher escalation level by $4 under their campaign's policy
# ($1 campaigns, $2 escalate_after in seconds, $3 levels): the caller still decides with
# `rules.escalation_level`; this only spares it the alerts with nothing due (a second of
# slack keeps float seconds from ever leaving one out).
SELECT_ESCALATION_DUE = """
SELECT a.id, a.campaign_id, a.unit, a.indicator, a.rule, a.fired_at, a.escalation_level
FROM alerts a
JOIN unnest($1::text[], $2::float8[], $3::int[]) AS p (campaign_id, after_s, levels)
  ON p.campaign_id = a.campaign_id
WHERE a.state = 'firing' AND p.after_s > 0 AND a.escalation_level < p.levels
  AND a.fired_at + make_interval(secs => p.after_s * (a.escalation_level + 1))
      <= $4::timestamptz + interval '1 second'
"""


COUNT_FIRING = """
SELECT campaign_id, rule, count(*) AS n FROM alerts WHERE state = 'firing'
GROUP BY campaign_id, rule
"""


SELECT_ALERTS = f"""
SELECT a.id, a.campaign_id, a.unit, a.indicator, a.rule, a.state, a.since, a.fired_at,
       a.resolved_at, {_EVALUATED_THROUGH} AS last_evaluated_at, a.escalation_level,
       a.escalated_at, a.details, u.ancestors
FROM alerts a LEFT JOIN units u ON u.code = a.unit
WHERE ($1::text IS NULL OR a.state = $1) AND ($2::text IS NULL OR a.campaign_id = $2)
  AND ($3::text IS NULL OR a.unit = $3) AND ($4::text IS NULL OR a.rule = $4)
  -- a reader's scope: its subtree roots (NULL: every unit)
  AND ($6::text[] IS NULL OR a.unit = ANY($6) OR u.ancestors && $6)
ORDER BY a.since DESC, a.id DESC
LIMIT $5
"""


SELECT_ALERTS_BY_ID = "SELECT * FROM alerts WHERE id = ANY ($1) ORDER BY unit, indicator, rule"


async def open_alerts(
    conn: Connection, keys: Sequence[Key] | None
) -> dict[AlertKey, asyncpg.Record]:
    rows = (
        await conn.fetch(SELECT_OPEN_ALERTS, None)
        if keys is None
        else await conn.fetch(SELECT_OPEN_ALERTS_KEYS, *_columns(keys))
    )
    return {_alert_key(r): r for r in rows}


async def touch_alerts(
    conn: Connection, at: datetime, touched: Sequence[tuple[int, str]]
) -> dict[int, int]:
    """Write fresh figures (id, details); the new version of each alert written."""
    if not touched:
        return {}
    rows = await conn.fetch(TOUCH_ALERTS, [t[0] for t in touched], at, [t[1] for t in touched])
    return {r["id"]: r["version"] for r in rows}


async def mark_evaluated(conn: Connection, campaign_ids: Sequence[str], at: datetime) -> None:
    """Record a full pass of `campaign_ids` at `at` (every open alert of them judged)."""
    await conn.execute(MARK_EVALUATED, sorted(campaign_ids), at)


async def lock_open_alert(conn: Connection, key: Key, rule: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        SELECT_OPEN_ALERT, key.campaign_id, key.unit, key.indicator, rule
    )
    return row


async def insert_alert(
    conn: Connection, key: Key, rule: str, alert: Any, at: datetime, details: str
) -> int | None:
    """Open an alert; None when another replica opened the same one a moment ago."""
    alert_id: int | None = await conn.fetchval(
        INSERT_ALERT,
        key.campaign_id,
        key.unit,
        key.indicator,
        rule,
        alert.state.value,
        alert.since,
        alert.fired_at,
        at,
        details,
    )
    return alert_id


async def update_alert(
    conn: Connection, alert_id: int, alert: Any, at: datetime, details: str
) -> None:
    await conn.execute(
        UPDATE_ALERT, alert_id, alert.state.value, alert.fired_at, alert.resolved_at, at, details
    )


async def delete_alert(conn: Connection, alert_id: int) -> None:
    await conn.execute(DELETE_ALERT, alert_id)


async def escalation_due(
    conn: Connection, policies: Sequence[tuple[str, timedelta, int]], at: datetime
) -> list[asyncpg.Record]:
    """Firing alerts that may be due a higher level: (campaign, escalate_after, levels)."""
    return list(
        await conn.fetch(
            SELECT_ESCALATION_DUE,
            [p[0] for p in policies],
            [p[1].total_seconds() for p in policies],
            [p[2] for p in policies],
            at,
        )
    )


async def count_firing(conn: Connection) -> dict[tuple[str, str], int]:
    """Alerts firing now, per (campaign, rule) that has any."""
    return {(r["campaign_id"], r["rule"]): r["n"] for r in await conn.fetch(COUNT_FIRING)}


async def lock_firing_alert(conn: Connection, alert_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(LOCK_FIRING_ALERT, alert_id)
    return row


async def set_escalation(conn: Connection, alert_id: int, level: int, at: datetime) -> None:
    await conn.execute(SET_ESCALATION, alert_id, level, at)


async def alerts_by_id(conn: Connection, ids: Sequence[int]) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_ALERTS_BY_ID, list(ids)))


async def resolved_since(conn: Connection, key: Key, rule: str, at: datetime) -> bool:
    """Whether an evaluation after `at` resolved this alert."""
    found: bool = await conn.fetchval(
        RESOLVED_SINCE, key.campaign_id, key.unit, key.indicator, rule, at
    )
    return found


async def lock_open_alerts(
    conn: Connection, keys: Sequence[AlertKey]
) -> dict[AlertKey, asyncpg.Record]:
    """Lock the open alerts of `keys` (in the one fixed order)."""
    rows = await conn.fetch(LOCK_OPEN_ALERTS, *_key_columns(keys))
    return {_alert_key(r): r for r in rows}


async def resolved_since_many(
    conn: Connection, keys: Sequence[AlertKey], at: datetime
) -> set[AlertKey]:
    """Those of `keys` that an evaluation after `at` resolved."""
    if not keys:
        return set()
    rows = await conn.fetch(RESOLVED_SINCE_MANY, *_key_columns(keys), at)
    return {AlertKey(Key(r["c"], r["u"], r["i"]), r["r"]) for r in rows}


async def insert_alerts(
    conn: Connection, new: Sequence[tuple[AlertKey, Any, str]], at: datetime
) -> dict[AlertKey, int]:
    """Open alerts (key, alert, details); those another replica opened a moment ago are
    left out of the answer."""
    if not new:
        return {}
    rows = await conn.fetch(
        INSERT_ALERTS,
        *_key_columns([n[0] for n in new]),
        [n[1].state.value for n in new],
        [n[1].since for n in new],
        [n[1].fired_at for n in new],
        [n[2] for n in new],
        at,
    )
    return {_alert_key(r): r["id"] for r in rows}


async def update_alerts(
    conn: Connection, changed: Sequence[tuple[int, Any, str]], at: datetime
) -> None:
    """A pending alert fired (id, alert, details); resolutions take `update_alert`."""
    if changed:
        await conn.execute(
            UPDATE_ALERTS,
            [c[0] for c in changed],
            [c[1].state.value for c in changed],
            [c[1].fired_at for c in changed],
            [c[2] for c in changed],
            at,
        )


async def delete_alerts(conn: Connection, alert_ids: Sequence[int]) -> None:
    if alert_ids:
        await conn.execute(DELETE_ALERTS, list(alert_ids))


async def list_alerts(
    conn: Connection,
    *,
    state: str | None,
    campaign: str | None,
    unit: str | None,
    rule: str | None,
    limit: int,
    scope: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Alert instances, newest first, each with its unit's `ancestors` (for silences); of
    units inside `scope`'s subtrees only, when given."""
    rows = await conn.fetch(SELECT_ALERTS, state, campaign, unit, rule, limit, scope)
    return [dict(r) for r in rows]
