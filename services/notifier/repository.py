"""The notifier's SQL. Callers own transactions; nothing here commits."""

from datetime import datetime, timedelta

import asyncpg

from tiendo.database import Connection

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
SELECT_STATES = """
SELECT * FROM unit_states
WHERE ($1::text IS NULL OR campaign_id = $1) AND ($2::text IS NULL OR unit = $2)
  AND ($3::text IS NULL OR indicator = $3)
ORDER BY campaign_id, unit, indicator
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
TOUCH_ALERT = "UPDATE alerts SET last_evaluated_at = $2, details = $3 WHERE id = $1"
DELETE_ALERT = "DELETE FROM alerts WHERE id = $1"
SELECT_ALERTS = """
SELECT * FROM alerts
WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR campaign_id = $2)
  AND ($3::text IS NULL OR unit = $3)
ORDER BY since DESC, id DESC
LIMIT $4
"""
SELECT_CONTACT = """
SELECT code, name, chief_name, chief_email, chief_webhook, chief_chat FROM units WHERE code = $1
"""
INSERT_NOTIFICATION = """
INSERT INTO notifications (dedup_key, alert_id, kind, recipient, channel, address, body)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (dedup_key) DO NOTHING
"""
# Claim due messages; SKIP LOCKED lets replicas share the outbox without double sends.
CLAIM_DUE = """
SELECT * FROM notifications
WHERE status = 'pending' AND next_attempt_at <= $1
ORDER BY next_attempt_at, id
LIMIT $2
FOR UPDATE SKIP LOCKED
"""
MARK_DELIVERED = """
UPDATE notifications SET status = 'delivered', attempts = attempts + 1, delivered_at = $2,
                         last_error = NULL
WHERE id = $1
"""
MARK_RETRY = """
UPDATE notifications SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3,
                         status = CASE WHEN attempts + 1 >= $4 THEN 'failed' ELSE 'pending' END
WHERE id = $1
RETURNING status
"""
SELECT_NOTIFICATIONS = """
SELECT id, alert_id, kind, recipient, channel, address, status, attempts, last_error,
       created_at, delivered_at
FROM notifications
WHERE ($1::text IS NULL OR status = $1) AND ($2::bigint IS NULL OR alert_id = $2)
ORDER BY id DESC
LIMIT $3
"""


async def upsert_state(conn: Connection, values: tuple[object, ...]) -> None:
    await conn.execute(UPSERT_STATE, *values)


async def states(
    conn: Connection,
    campaign: str | None = None,
    unit: str | None = None,
    indicator: str | None = None,
) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_STATES, campaign, unit, indicator))


async def claim_due(conn: Connection, now: datetime, limit: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(CLAIM_DUE, now, limit))


async def mark_delivered(conn: Connection, notification_id: int, at: datetime) -> None:
    await conn.execute(MARK_DELIVERED, notification_id, at)


async def mark_retry(
    conn: Connection, notification_id: int, retry_at: datetime, error: str, max_attempts: int
) -> str:
    status: str = await conn.fetchval(
        MARK_RETRY, notification_id, retry_at, error[:500], max_attempts
    )
    return status


def backoff(attempts: int, base: float = 1.0, cap: float = 300.0) -> timedelta:
    """Exponential backoff after `attempts` failures."""
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempts - 1)))
