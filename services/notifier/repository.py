"""The notifier's SQL. Callers own transactions; nothing here commits.

Reads tables the aggregator owns, never writing them: `units` (chiefs' contacts and the
tree), `campaigns` (name and timezone for messages) and `indicators` (names); the figures
it judges come from `tiendo.board`."""

import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from tiendo.database import Connection

Key = tuple[str, str, str]

SELECT_POLICIES = "SELECT campaign_id, config FROM alert_policies"
SELECT_POLICY = "SELECT config FROM alert_policies WHERE campaign_id = $1"
UPSERT_POLICY = """
INSERT INTO alert_policies (campaign_id, config, updated_at, updated_by)
VALUES ($1, $2, now(), $3)
ON CONFLICT (campaign_id) DO UPDATE
SET config = EXCLUDED.config, updated_at = now(), updated_by = EXCLUDED.updated_by
"""
INSERT_AUDIT = "INSERT INTO audit_log (actor, action, subject, details) VALUES ($1, $2, $3, $4)"
# Every admin change (aggregator or notifier) writes one audit row: its last id is a cheap
# version of the reference data.
SELECT_REFERENCE_VERSION = "SELECT coalesce(max(id), 0) FROM audit_log"
SELECT_CAMPAIGN_NAMES = "SELECT id, name, timezone FROM campaigns"
SELECT_INDICATOR_NAMES = "SELECT code, name, name_en FROM indicators"

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
# Groups are created ahead of a batch, outside its transaction (a batch takes no group
# lock: it only adds members, level 0).
CREATE_GROUPS = """
INSERT INTO alert_groups (campaign_id, recipient)
SELECT DISTINCT c, r FROM unnest($1::text[], $2::text[]) AS t (c, r)
ORDER BY c, r
ON CONFLICT (campaign_id, recipient) DO NOTHING
"""
SELECT_GROUP_IDS = """
SELECT g.id, g.campaign_id, g.recipient FROM alert_groups g
JOIN unnest($1::text[], $2::text[]) AS t (c, r) ON g.campaign_id = t.c AND g.recipient = t.r
"""
ADD_MEMBERS = """
INSERT INTO alert_group_members (group_id, alert_id, level, state, changed_at)
SELECT g, a, 0, 'firing', $3 FROM unnest($1::bigint[], $2::bigint[]) AS t (g, a)
ON CONFLICT (group_id, alert_id) DO NOTHING
"""
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
COUNT_FIRING = "SELECT rule, count(*) AS n FROM alerts WHERE state = 'firing' GROUP BY rule"
SELECT_ALERTS = f"""
SELECT a.id, a.campaign_id, a.unit, a.indicator, a.rule, a.state, a.since, a.fired_at,
       a.resolved_at, {_EVALUATED_THROUGH} AS last_evaluated_at, a.escalation_level,
       a.escalated_at, a.details, u.ancestors
FROM alerts a LEFT JOIN units u ON u.code = a.unit
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
# Every group with what decides whether planning it can do anything now: a resolved
# member (news, or a resolution to drop), since when its oldest untold firing member
# waits (a change message is due `group_wait` after it), and the repeat anchor. A member
# inhibited by a firing rule earlier in $1 (`rules.PRECEDENCE`) is never told: it waits
# for nothing.
SELECT_GROUPS = """
SELECT g.id, g.campaign_id, g.anchor_at, g.repeat_slot,
       coalesce(bool_or(m.state = 'resolved'), false) AS has_resolved,
       min(m.changed_at) FILTER (
           WHERE m.state = 'firing' AND NOT EXISTS (
               SELECT 1 FROM alerts f
               WHERE f.campaign_id = a.campaign_id AND f.unit = a.unit
                 AND f.indicator = a.indicator AND f.state = 'firing' AND f.id <> a.id
                 AND array_position($1::text[], f.rule) < array_position($1::text[], a.rule))
       ) AS untold_since
FROM alert_groups g
LEFT JOIN alert_group_members m
  ON m.group_id = g.id AND (m.state = 'resolved' OR NOT m.notified)
LEFT JOIN alerts a ON a.id = m.alert_id
GROUP BY g.id
"""
# Members of groups $1, and what silences match on (no locks: a sketch the planner uses to
# pick the groups worth locking).
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
WHERE g.id = ANY ($1::bigint[])
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
# A resolution locks the groups its alert is in, in the planner's order (by id), before it
# touches their members.
LOCK_GROUPS_OF_ALERT = """
SELECT g.id FROM alert_groups g
WHERE g.id IN (SELECT group_id FROM alert_group_members WHERE alert_id = $1)
ORDER BY g.id
FOR UPDATE
"""
SELECT_GROUP_RECIPIENT = "SELECT recipient FROM alert_groups WHERE id = $1"
# Units among $1 whose chief can be reached on some channel (digest recipients).
REACHABLE_UNITS = """
SELECT code, name, chief_name, chief_email, chief_webhook, chief_chat FROM units
WHERE code = ANY ($1::text[])
  AND (chief_email IS NOT NULL OR chief_webhook IS NOT NULL OR chief_chat IS NOT NULL)
ORDER BY code
"""
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
SELECT_RANKS = "SELECT * FROM briefing_ranks WHERE campaign_id = $1 AND slot = $2"
INSERT_RANKS = """
INSERT INTO briefing_ranks (campaign_id, slot, indicator, unit, rank, of_units, pct)
SELECT $1, $2, i, u, r, o, p
FROM unnest($3::text[], $4::text[], $5::int[], $6::int[], $7::float8[]) AS t (i, u, r, o, p)
ON CONFLICT DO NOTHING
"""
# One marker row per (campaign, slot) makes "the ranking of this slot was stored" visible
# even when nobody was in the bottom (every unit had reached its target), and holds the
# version of history and reference data it was computed from.
RANKS_STORED = """
INSERT INTO briefing_ranks (campaign_id, slot, indicator, unit, rank, of_units, pct,
                            history_version)
VALUES ($1, $2, '', '', 0, 0, NULL, $3)
"""
DELETE_RANKS = "DELETE FROM briefing_ranks WHERE campaign_id = $1 AND slot = $2"
# Replicas computing the same briefing take turns (both compute the same from history).
LOCK_RANKS = """
SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2::timestamptz::text, 7301120))
"""
# What a briefing's ranking depends on: the counted events of the campaign's days up to the
# briefing's (a late report from before it adds one), and every admin change (targets).
HISTORY_VERSION = """
SELECT coalesce((SELECT sum(events) FROM daily_counts WHERE campaign_id = $1 AND day <= $2), 0)
       || ':' || coalesce((SELECT max(id) FROM audit_log), 0)
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


def _columns(keys: Sequence[Key]) -> tuple[list[str], list[str], list[str]]:
    return [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]


async def open_alerts(
    conn: Connection, keys: Sequence[Key] | None
) -> dict[tuple[str, str, str, str], asyncpg.Record]:
    rows = (
        await conn.fetch(SELECT_OPEN_ALERTS, None)
        if keys is None
        else await conn.fetch(SELECT_OPEN_ALERTS_KEYS, *_columns(keys))
    )
    return {(r["campaign_id"], r["unit"], r["indicator"], r["rule"]): r for r in rows}


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


async def groups(conn: Connection, precedence: Sequence[str]) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_GROUPS, list(precedence)))


async def group_members(conn: Connection, group_ids: Sequence[int]) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_GROUP_MEMBERS, list(group_ids)))


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


async def lock_open_alert(conn: Connection, key: Key, rule: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(SELECT_OPEN_ALERT, *key, rule)
    return row


async def insert_alert(
    conn: Connection, key: Key, rule: str, alert: Any, at: datetime, details: str
) -> int | None:
    """Open an alert; None when another replica opened the same one a moment ago."""
    alert_id: int | None = await conn.fetchval(
        INSERT_ALERT, *key, rule, alert.state.value, alert.since, alert.fired_at, at, details
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


async def lock_groups_of(conn: Connection, alert_id: int) -> None:
    await conn.fetch(LOCK_GROUPS_OF_ALERT, alert_id)


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


async def count_firing(conn: Connection) -> dict[str, int]:
    return {r["rule"]: r["n"] for r in await conn.fetch(COUNT_FIRING)}


async def lock_firing_alert(conn: Connection, alert_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(LOCK_FIRING_ALERT, alert_id)
    return row


async def set_escalation(conn: Connection, alert_id: int, level: int, at: datetime) -> None:
    await conn.execute(SET_ESCALATION, alert_id, level, at)


async def lock_group(conn: Connection, group_id: int) -> bool:
    """Lock a group for planning; False when another replica holds it."""
    return await conn.fetchrow(LOCK_GROUP, group_id) is not None


async def group_recipient(conn: Connection, group_id: int) -> str:
    recipient: str = await conn.fetchval(SELECT_GROUP_RECIPIENT, group_id)
    return recipient


async def update_group(conn: Connection, group_id: int, state: Any, at: datetime) -> None:
    await conn.execute(
        UPDATE_GROUP, group_id, state.seq, state.anchor_seq, state.anchor_at, state.repeat_slot, at
    )


async def mark_notified(conn: Connection, group_id: int, alert_ids: Sequence[int]) -> None:
    await conn.execute(MARK_NOTIFIED, group_id, list(alert_ids))


async def drop_members(conn: Connection, group_id: int, alert_ids: Sequence[int]) -> None:
    await conn.execute(DROP_MEMBERS, group_id, list(alert_ids))


async def alerts_by_id(conn: Connection, ids: Sequence[int]) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_ALERTS_BY_ID, list(ids)))


async def dedup_keys(conn: Connection, prefix: str) -> list[str]:
    """Dedup keys of the notifications queued under `prefix` (a digest slot)."""
    return [r["dedup_key"] for r in await conn.fetch(SELECT_DEDUP_KEYS_LIKE, prefix + "%")]


async def reachable_units(conn: Connection, codes: Sequence[str]) -> list[asyncpg.Record]:
    return list(await conn.fetch(REACHABLE_UNITS, list(codes)))


async def ranks(conn: Connection, campaign_id: str, slot: datetime) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_RANKS, campaign_id, slot))


async def history_version(conn: Connection, campaign_id: str, day: date) -> str:
    """The version of what the leaderboard as of a briefing on local `day` depends on."""
    version: str = await conn.fetchval(HISTORY_VERSION, campaign_id, day)
    return version


async def replace_ranks(
    conn: Connection,
    campaign_id: str,
    slot: datetime,
    version: str,
    rows: Sequence[tuple[str, str, int, int, float | None]],
) -> None:
    """Store a briefing's bottom ranks (indicator, unit, rank, of_units, pct), replacing
    what an older version of history gave; replicas take turns."""
    async with conn.transaction():
        await conn.execute(LOCK_RANKS, campaign_id, slot)
        await conn.execute(DELETE_RANKS, campaign_id, slot)
        await conn.execute(RANKS_STORED, campaign_id, slot, version)
        await insert_ranks(conn, campaign_id, slot, rows)


async def insert_ranks(
    conn: Connection,
    campaign_id: str,
    slot: datetime,
    rows: Sequence[tuple[str, str, int, int, float | None]],
) -> None:
    """(indicator, unit, rank, of_units, pct) of the bottom of one briefing."""
    await conn.execute(
        INSERT_RANKS,
        campaign_id,
        slot,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
    )


async def reference_version(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        version: int = await conn.fetchval(SELECT_REFERENCE_VERSION)
    return version


async def resolved_since(conn: Connection, key: Key, rule: str, at: datetime) -> bool:
    """Whether an evaluation after `at` resolved this alert."""
    found: bool = await conn.fetchval(RESOLVED_SINCE, *key, rule, at)
    return found


OpenKey = tuple[str, str, str, str]  # (campaign, unit, indicator, rule)


def _key_columns(keys: Sequence[OpenKey]) -> list[list[str]]:
    return [[k[n] for k in keys] for n in range(4)]


async def lock_open_alerts(
    conn: Connection, keys: Sequence[OpenKey]
) -> dict[OpenKey, asyncpg.Record]:
    """Lock the open alerts of `keys` (in the one fixed order)."""
    rows = await conn.fetch(LOCK_OPEN_ALERTS, *_key_columns(keys))
    return {(r["campaign_id"], r["unit"], r["indicator"], r["rule"]): r for r in rows}


async def resolved_since_many(
    conn: Connection, keys: Sequence[OpenKey], at: datetime
) -> set[OpenKey]:
    """Those of `keys` that an evaluation after `at` resolved."""
    if not keys:
        return set()
    rows = await conn.fetch(RESOLVED_SINCE_MANY, *_key_columns(keys), at)
    return {(r["c"], r["u"], r["i"], r["r"]) for r in rows}


async def insert_alerts(
    conn: Connection, new: Sequence[tuple[OpenKey, Any, str]], at: datetime
) -> dict[OpenKey, int]:
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
    return {(r["campaign_id"], r["unit"], r["indicator"], r["rule"]): r["id"] for r in rows}


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


async def create_groups(
    conn: Connection, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """The groups of (campaign, recipient) pairs, created where missing."""
    if not pairs:
        return {}
    columns = [p[0] for p in pairs], [p[1] for p in pairs]
    await conn.execute(CREATE_GROUPS, *columns)
    rows = await conn.fetch(SELECT_GROUP_IDS, *columns)
    return {(r["campaign_id"], r["recipient"]): r["id"] for r in rows}


async def add_members(conn: Connection, members: Sequence[tuple[int, int]], at: datetime) -> None:
    """(group, alert) at level 0, firing since `at`."""
    if members:
        await conn.execute(ADD_MEMBERS, [m[0] for m in members], [m[1] for m in members], at)
