"""The notifier's SQL. Callers own transactions; nothing here commits.

Reads three tables the aggregator owns, never writing them: `units` (chiefs' contacts and
the tree), `campaigns` (name and timezone for messages) and `indicators` (names)."""

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from tiendo.database import Connection

Key = tuple[str, str, str]

# A newer computation wins; the compacted feed may redeliver older ones after a restart.
UPSERT_STATE = """
INSERT INTO unit_states AS s (campaign_id, unit, indicator, unit_name, level, parent, value,
    baseline, target, starts_at, deadline, last_event_at, computed_at, behind_threshold,
    stale_after, timezone)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (campaign_id, unit, indicator) DO UPDATE
SET unit_name = EXCLUDED.unit_name, level = EXCLUDED.level, parent = EXCLUDED.parent,
    value = EXCLUDED.value, baseline = EXCLUDED.baseline, target = EXCLUDED.target,
    starts_at = EXCLUDED.starts_at, deadline = EXCLUDED.deadline,
    last_event_at = EXCLUDED.last_event_at, computed_at = EXCLUDED.computed_at,
    behind_threshold = EXCLUDED.behind_threshold, stale_after = EXCLUDED.stale_after,
    timezone = EXCLUDED.timezone
WHERE s.computed_at <= EXCLUDED.computed_at
"""
# One sample per key and 10 minutes (the latest in it): enough for a 7-day run rate.
UPSERT_SAMPLE = """
INSERT INTO progress_samples AS p (campaign_id, unit, indicator, bucket, at, value)
VALUES ($1, $2, $3, date_bin('10 minutes', $4::timestamptz, TIMESTAMPTZ '2000-01-01'), $4, $5)
ON CONFLICT (campaign_id, unit, indicator, bucket) DO UPDATE
SET at = EXCLUDED.at, value = EXCLUDED.value
WHERE p.at <= EXCLUDED.at
"""
# Samples older than the cutoff are dropped, except each key's latest one before it (the
# value a window starting before the cutoff needs).
PRUNE_SAMPLES = """
DELETE FROM progress_samples s
WHERE s.at < $1 AND EXISTS (
    SELECT 1 FROM progress_samples n
    WHERE n.campaign_id = s.campaign_id AND n.unit = s.unit AND n.indicator = s.indicator
      AND n.at > s.at AND n.at <= $1)
"""
SELECT_STATES = """
SELECT * FROM unit_states
WHERE ($1::text IS NULL OR campaign_id = $1) AND ($2::text IS NULL OR unit = $2)
  AND ($3::text IS NULL OR indicator = $3)
ORDER BY campaign_id, unit, indicator
"""
SELECT_STATES_KEYS = """
SELECT s.* FROM unit_states s
JOIN unnest($1::text[], $2::text[], $3::text[]) AS k (c, u, i)
  ON s.campaign_id = k.c AND s.unit = k.u AND s.indicator = k.i
ORDER BY s.campaign_id, s.unit, s.indicator
"""
# The value each key had at its time t: the latest sample at or before t (NULL: unknown).
VALUES_AT = """
SELECT k.c, k.u, k.i, (
    SELECT p.value FROM progress_samples p
    WHERE p.campaign_id = k.c AND p.unit = k.u AND p.indicator = k.i AND p.at <= k.t
    ORDER BY p.at DESC LIMIT 1) AS value
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS k (c, u, i, t)
"""

SELECT_POLICIES = "SELECT campaign_id, config FROM alert_policies"
SELECT_POLICY = "SELECT config FROM alert_policies WHERE campaign_id = $1"
UPSERT_POLICY = """
INSERT INTO alert_policies (campaign_id, config, updated_at, updated_by)
VALUES ($1, $2, now(), $3)
ON CONFLICT (campaign_id) DO UPDATE
SET config = EXCLUDED.config, updated_at = now(), updated_by = EXCLUDED.updated_by
"""
INSERT_AUDIT = "INSERT INTO audit_log (actor, action, subject, details) VALUES ($1, $2, $3, $4)"
SELECT_CAMPAIGN_NAMES = "SELECT id, name, timezone FROM campaigns"
SELECT_INDICATOR_NAMES = "SELECT code, name, name_en FROM indicators"

SELECT_OPEN_ALERTS = """
SELECT * FROM alerts
WHERE state <> 'resolved' AND ($1::text[] IS NULL OR campaign_id = ANY ($1))
"""
SELECT_OPEN_ALERTS_KEYS = """
SELECT a.* FROM alerts a
JOIN unnest($1::text[], $2::text[], $3::text[]) AS k (c, u, i)
  ON a.campaign_id = k.c AND a.unit = k.u AND a.indicator = k.i
WHERE a.state <> 'resolved'
"""
# Evaluations of one key are serialised by locking its open alert row (or, before one
# exists, by the unique index on open alerts), so two replicas cannot both fire it.
SELECT_OPEN_ALERT = """
SELECT * FROM alerts
WHERE campaign_id = $1 AND unit = $2 AND indicator = $3 AND rule = $4 AND state <> 'resolved'
FOR UPDATE
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
# A bulk "still the same" after an evaluation: figures refreshed, no lifecycle change.
TOUCH_ALERTS = """
UPDATE alerts a SET last_evaluated_at = $2, details = t.details
FROM unnest($1::bigint[], $3::jsonb[]) AS t (id, details)
WHERE a.id = t.id AND a.last_evaluated_at <= $2 AND a.state <> 'resolved'
"""
DELETE_ALERT = "DELETE FROM alerts WHERE id = $1"
LOCK_FIRING_ALERT = "SELECT * FROM alerts WHERE id = $1 AND state = 'firing' FOR UPDATE"
SET_ESCALATION = "UPDATE alerts SET escalation_level = $2, escalated_at = $3 WHERE id = $1"
SELECT_FIRING = """
SELECT id, campaign_id, unit, indicator, rule, fired_at, escalation_level FROM alerts
WHERE state = 'firing'
"""
COUNT_FIRING = "SELECT rule, count(*) AS n FROM alerts WHERE state = 'firing' GROUP BY rule"
SELECT_ALERTS = """
SELECT a.*, u.ancestors FROM alerts a LEFT JOIN units u ON u.code = a.unit
WHERE ($1::text IS NULL OR a.state = $1) AND ($2::text IS NULL OR a.campaign_id = $2)
  AND ($3::text IS NULL OR a.unit = $3) AND ($4::text IS NULL OR a.rule = $4)
ORDER BY a.since DESC, a.id DESC
LIMIT $5
"""

UNIT = """
SELECT code, name, level, parent_code, ancestors, chief_name, chief_email, chief_webhook,
       chief_chat
FROM units WHERE code = $1
"""
UPSERT_GROUP = """
INSERT INTO alert_groups (campaign_id, recipient) VALUES ($1, $2)
ON CONFLICT (campaign_id, recipient) DO UPDATE SET recipient = EXCLUDED.recipient
RETURNING id
"""
ADD_MEMBER = """
INSERT INTO alert_group_members (group_id, alert_id, level, state, changed_at)
VALUES ($1, $2, $3, 'firing', $4)
ON CONFLICT (group_id, alert_id) DO NOTHING
"""
# A resolution is owed only to recipients told of the firing; the others just forget it.
RESOLVE_MEMBERS = """
UPDATE alert_group_members SET state = 'resolved', changed_at = $2
WHERE alert_id = $1 AND notified
"""
FORGET_MEMBERS = "DELETE FROM alert_group_members WHERE alert_id = $1 AND NOT notified"
# Groups with any member, their members and what silences match on (no locks: a sketch the
# planner uses to pick the groups worth locking).
SELECT_GROUP_MEMBERS = """
SELECT g.id AS group_id, g.campaign_id, g.recipient, g.seq, g.anchor_seq, g.anchor_at,
       g.repeat_slot, m.alert_id, m.level, m.state, m.changed_at, m.notified,
       a.unit, a.indicator, a.rule, coalesce(u.ancestors, '{}') AS ancestors,
       ARRAY(SELECT f.rule FROM alerts f
             WHERE f.campaign_id = a.campaign_id AND f.unit = a.unit
               AND f.indicator = a.indicator AND f.state = 'firing'
               AND f.id <> a.id) AS firing_rules
FROM alert_groups g
JOIN alert_group_members m ON m.group_id = g.id
JOIN alerts a ON a.id = m.alert_id
LEFT JOIN units u ON u.code = a.unit
WHERE ($1::bigint IS NULL OR g.id = $1)
ORDER BY g.id, m.alert_id
"""
LOCK_GROUP = "SELECT * FROM alert_groups WHERE id = $1 FOR UPDATE SKIP LOCKED"
UPDATE_GROUP = """
UPDATE alert_groups SET seq = $2, anchor_seq = $3, anchor_at = $4, repeat_slot = $5,
                        last_message_at = $6
WHERE id = $1
"""
MARK_NOTIFIED = """
UPDATE alert_group_members SET notified = true WHERE group_id = $1 AND alert_id = ANY ($2)
"""
DROP_MEMBERS = "DELETE FROM alert_group_members WHERE group_id = $1 AND alert_id = ANY ($2)"
SELECT_ALERTS_BY_ID = "SELECT * FROM alerts WHERE id = ANY ($1) ORDER BY unit, indicator, rule"
ACTIVE_SILENCES = """
SELECT * FROM silences WHERE expired_at IS NULL AND starts_at <= $1 AND ends_at > $1
"""

INSERT_NOTIFICATION = """
INSERT INTO notifications (dedup_key, alert_id, kind, recipient, channel, address, body,
                           group_id, campaign_id, subject, language)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id
"""
INSERT_NOTIFICATION_ALERTS = """
INSERT INTO notification_alerts (notification_id, alert_id)
SELECT $1, unnest($2::bigint[])
ON CONFLICT DO NOTHING
"""
SELECT_DEDUP_KEYS_LIKE = "SELECT dedup_key FROM notifications WHERE dedup_key LIKE $1"
DIGEST_RECIPIENTS = """
SELECT s.*, u.chief_name, u.chief_email, u.chief_webhook, u.chief_chat, u.name AS name
FROM unit_states s JOIN units u ON u.code = s.unit
WHERE s.campaign_id = $1
  AND (u.chief_email IS NOT NULL OR u.chief_webhook IS NOT NULL OR u.chief_chat IS NOT NULL)
ORDER BY s.unit, s.indicator
"""
CHILD_STATES = "SELECT * FROM unit_states WHERE campaign_id = $1 AND parent = ANY ($2)"
FIRING_BY_UNIT = """
SELECT unit, count(*) AS n FROM alerts
WHERE campaign_id = $1 AND state = 'firing' AND unit = ANY ($2)
GROUP BY unit
"""

SELECT_RANKS = "SELECT * FROM briefing_ranks WHERE campaign_id = $1 AND slot = $2"
INSERT_RANKS = """
INSERT INTO briefing_ranks (campaign_id, slot, indicator, unit, rank, of_units, pct)
SELECT $1, $2, i, u, r, o, p
FROM unnest($3::text[], $4::text[], $5::int[], $6::int[], $7::float8[]) AS t (i, u, r, o, p)
ON CONFLICT DO NOTHING
"""
# One marker row per (campaign, slot) makes "the ranking of this slot was stored" visible
# even when nobody was in the bottom (every unit had reached its target).
RANKS_STORED = """
INSERT INTO briefing_ranks (campaign_id, slot, indicator, unit, rank, of_units, pct)
VALUES ($1, $2, '', '', 0, 0, NULL)
ON CONFLICT DO NOTHING
RETURNING 1
"""

# Delivery: claim due or abandoned messages (a crashed sender's lease ran out), on the
# database's wall clock: delivery retries and leases are about real servers, not the
# simulated campaign time that drives the alert timeline.
CLAIM = """
UPDATE notifications n
SET status = 'sending', claimed_by = $1, lease_until = clock_timestamp() + $2::interval
WHERE n.id IN (
    SELECT id FROM notifications
    WHERE (status = 'pending' AND next_attempt_at <= clock_timestamp())
       OR (status = 'sending' AND lease_until < clock_timestamp())
    ORDER BY id
    LIMIT $3
    FOR UPDATE SKIP LOCKED)
RETURNING n.*
"""
# Starts attempt n only while this replica still holds the message; returns the attempt id.
START_ATTEMPT = """
WITH held AS (
    UPDATE notifications
    SET attempts = attempts + 1, lease_until = clock_timestamp() + $3::interval
    WHERE id = $1 AND claimed_by = $2 AND status = 'sending'
    RETURNING id, attempts)
INSERT INTO delivery_attempts (notification_id, attempt, replica)
SELECT id, attempts, $2 FROM held
RETURNING id, attempt
"""
FINISH_ATTEMPT = """
UPDATE delivery_attempts SET finished_at = clock_timestamp(), ok = $2, error = $3 WHERE id = $1
"""
MARK_DELIVERED = """
UPDATE notifications SET status = 'delivered', delivered_at = clock_timestamp(),
                         last_error = NULL, lease_until = NULL
WHERE id = $1 AND status <> 'delivered'
"""
MARK_FAILED = """
UPDATE notifications SET status = 'failed', last_error = $2, lease_until = NULL
WHERE id = $1 AND claimed_by = $3 AND status = 'sending'
"""
NOTE_ERROR = "UPDATE notifications SET last_error = $2 WHERE id = $1"
# Graceful stop: give back what this replica holds, to be sent by whoever polls next.
RELEASE = """
UPDATE notifications SET status = 'pending', lease_until = NULL, claimed_by = NULL
WHERE claimed_by = $1 AND status = 'sending' AND id = ANY ($2)
"""
SELECT_NOTIFICATIONS = """
SELECT n.id, n.dedup_key AS delivery_id, n.kind, n.campaign_id, n.recipient, n.channel,
       n.address, n.subject, n.language, n.status, n.attempts, n.last_error, n.created_at,
       n.delivered_at, n.claimed_by,
       coalesce((SELECT array_agg(na.alert_id ORDER BY na.alert_id)
                 FROM notification_alerts na WHERE na.notification_id = n.id),
                '{}') AS alert_ids,
       coalesce((SELECT json_agg(json_build_object(
                    'attempt', d.attempt, 'replica', d.replica, 'started_at', d.started_at,
                    'finished_at', d.finished_at, 'ok', d.ok, 'error', d.error)
                    ORDER BY d.attempt, d.id)
                 FROM delivery_attempts d WHERE d.notification_id = n.id),
                '[]') AS attempt_log
FROM notifications n
WHERE ($1::text IS NULL OR n.status = $1)
  AND ($2::bigint IS NULL OR n.alert_id = $2 OR EXISTS (
        SELECT 1 FROM notification_alerts na WHERE na.notification_id = n.id
          AND na.alert_id = $2))
  AND ($3::text IS NULL OR n.recipient = $3) AND ($4::text IS NULL OR n.channel = $4)
  AND ($5::text IS NULL OR n.kind = $5) AND ($6::text IS NULL OR n.campaign_id = $6)
ORDER BY n.id DESC
LIMIT $7
"""

INSERT_SILENCE = """
INSERT INTO silences (campaign_id, unit, indicator, rule, starts_at, ends_at, created_by,
                      comment)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *
"""
SELECT_SILENCES = """
SELECT * FROM silences
WHERE ($1::boolean IS NOT TRUE OR (expired_at IS NULL AND ends_at > $2))
ORDER BY id DESC
LIMIT $3
"""
SELECT_SILENCE = "SELECT * FROM silences WHERE id = $1"
EXPIRE_SILENCE = """
UPDATE silences SET expired_at = $2 WHERE id = $1 AND expired_at IS NULL RETURNING *
"""


async def upsert_state(conn: Connection, values: tuple[object, ...]) -> None:
    await conn.execute(UPSERT_STATE, *values)


async def upsert_states(conn: Connection, values: Sequence[tuple[object, ...]]) -> None:
    """Store feed states and their value samples."""
    await conn.executemany(UPSERT_STATE, values)
    # (campaign, unit, indicator, computed_at, value) of each state
    await conn.executemany(UPSERT_SAMPLE, [(v[0], v[1], v[2], v[12], v[6]) for v in values])


async def prune_samples(conn: Connection, before: datetime) -> str:
    status: str = await conn.execute(PRUNE_SAMPLES, before)
    return status


async def states(
    conn: Connection,
    campaign: str | None = None,
    unit: str | None = None,
    indicator: str | None = None,
) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_STATES, campaign, unit, indicator))


def _columns(keys: Sequence[Key]) -> tuple[list[str], list[str], list[str]]:
    return [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]


async def states_of(conn: Connection, keys: Sequence[Key]) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_STATES_KEYS, *_columns(keys)))


async def values_at(conn: Connection, wanted: Sequence[tuple[Key, datetime]]) -> dict[Key, int]:
    """The sampled value of each key at its time (keys without a sample are left out)."""
    if not wanted:
        return {}
    rows = await conn.fetch(VALUES_AT, *_columns([k for k, _ in wanted]), [t for _, t in wanted])
    return {(r["c"], r["u"], r["i"]): r["value"] for r in rows if r["value"] is not None}


async def open_alerts(
    conn: Connection, keys: Sequence[Key] | None
) -> dict[tuple[str, str, str, str], asyncpg.Record]:
    rows = (
        await conn.fetch(SELECT_OPEN_ALERTS, None)
        if keys is None
        else await conn.fetch(SELECT_OPEN_ALERTS_KEYS, *_columns(keys))
    )
    return {(r["campaign_id"], r["unit"], r["indicator"], r["rule"]): r for r in rows}


async def touch_alerts(conn: Connection, at: datetime, touched: Sequence[tuple[int, str]]) -> None:
    if touched:
        await conn.execute(TOUCH_ALERTS, [t[0] for t in touched], at, [t[1] for t in touched])


async def policies(conn: Connection) -> dict[str, dict[str, Any]]:
    return {r["campaign_id"]: json.loads(r["config"]) for r in await conn.fetch(SELECT_POLICIES)}


async def policy(conn: Connection, campaign_id: str) -> dict[str, Any] | None:
    config = await conn.fetchval(SELECT_POLICY, campaign_id)
    return json.loads(config) if config is not None else None


async def save_policy(
    conn: Connection, campaign_id: str, config: dict[str, Any], actor: str
) -> None:
    await conn.execute(UPSERT_POLICY, campaign_id, json.dumps(config), actor)
    await audit(conn, actor, "alert_policy.put", campaign_id, config)


async def audit(conn: Connection, actor: str, action: str, subject: str, details: object) -> None:
    await conn.execute(INSERT_AUDIT, actor, action, subject, json.dumps(details, default=str))


async def campaign_names(conn: Connection) -> dict[str, asyncpg.Record]:
    return {r["id"]: r for r in await conn.fetch(SELECT_CAMPAIGN_NAMES)}


async def indicator_names(conn: Connection) -> dict[str, asyncpg.Record]:
    return {r["code"]: r for r in await conn.fetch(SELECT_INDICATOR_NAMES)}


async def unit(conn: Connection, code: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(UNIT, code)
    return row


async def add_member(
    conn: Connection, campaign_id: str, recipient: str, alert_id: int, level: int, at: datetime
) -> None:
    group_id = await conn.fetchval(UPSERT_GROUP, campaign_id, recipient)
    await conn.execute(ADD_MEMBER, group_id, alert_id, level, at)


async def resolve_members(conn: Connection, alert_id: int, at: datetime) -> None:
    await conn.execute(RESOLVE_MEMBERS, alert_id, at)
    await conn.execute(FORGET_MEMBERS, alert_id)


async def group_members(conn: Connection, group_id: int | None = None) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_GROUP_MEMBERS, group_id))


async def active_silences(conn: Connection, at: datetime) -> list[asyncpg.Record]:
    return list(await conn.fetch(ACTIVE_SILENCES, at))


async def insert_notification(
    conn: Connection,
    *,
    dedup_key: str,
    kind: str,
    recipient: str,
    channel: str,
    address: str,
    body: dict[str, Any],
    group_id: int | None,
    campaign_id: str,
    subject: str,
    language: str,
    alert_ids: Sequence[int],
) -> int | None:
    """Queue one message to one address; None when its dedup key was queued already."""
    notification_id: int | None = await conn.fetchval(
        INSERT_NOTIFICATION,
        dedup_key,
        alert_ids[0] if len(alert_ids) == 1 else None,
        kind,
        recipient,
        channel,
        address,
        json.dumps(body, ensure_ascii=False, sort_keys=True),
        group_id,
        campaign_id,
        subject,
        language,
    )
    if notification_id is not None and alert_ids:
        await conn.execute(INSERT_NOTIFICATION_ALERTS, notification_id, list(alert_ids))
    return notification_id


async def claim(
    conn: Connection, replica: str, lease: timedelta, limit: int
) -> list[asyncpg.Record]:
    return list(await conn.fetch(CLAIM, replica, lease, limit))


async def start_attempt(
    conn: Connection, notification_id: int, replica: str, lease: timedelta
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(START_ATTEMPT, notification_id, replica, lease)
    return row


async def finish_attempt(conn: Connection, attempt_id: int, ok: bool, error: str | None) -> None:
    await conn.execute(FINISH_ATTEMPT, attempt_id, ok, error[:500] if error else None)
