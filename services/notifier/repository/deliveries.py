"""Notifications: the outbox rows, their leases and delivery attempts."""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from tiendo.database import Connection, like_prefix

INSERT_NOTIFICATION = """
INSERT INTO notifications (dedup_key, alert_id, kind, recipient, channel, address, body,
                           group_id, campaign_id, subject, language, fallback)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id
"""


# A message nobody can be sent (no address anywhere): written straight as failed, so
# that the delivery log shows it, on the pseudo-channel `none`, never claimed.
INSERT_UNDELIVERABLE = """
INSERT INTO notifications (dedup_key, alert_id, kind, recipient, channel, address, body,
                           group_id, campaign_id, subject, language, status, last_error)
VALUES ($1, $2, $3, $4, 'none', '', $5, $6, $7, $8, $9, 'failed', $10)
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id
"""


INSERT_NOTIFICATION_ALERTS = """
INSERT INTO notification_alerts (notification_id, alert_id)
SELECT $1, unnest($2::bigint[])
ON CONFLICT DO NOTHING
"""


SELECT_DEDUP_KEYS_LIKE = "SELECT dedup_key FROM notifications WHERE dedup_key LIKE $1"


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


# Where an attempt sends: the recipient's contact on the row's channel as it is now (a
# contact fixed while the message waited is used by the next attempt; one removed fails it).
SELECT_CONTACT = "SELECT address FROM contacts WHERE unit = $1 AND channel = $2"


# Starts attempt n only while this replica still holds the message, to `$4` (the address it
# is sent to, kept with the attempt and as the row's latest); returns the attempt id.
START_ATTEMPT = """
WITH held AS (
    UPDATE notifications
    SET attempts = attempts + 1, lease_until = clock_timestamp() + $3::interval, address = $4
    WHERE id = $1 AND claimed_by = $2 AND status = 'sending'
    RETURNING id, attempts)
INSERT INTO delivery_attempts (notification_id, attempt, replica, address)
SELECT id, attempts, $2, $4 FROM held
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
UPDATE notifications SET status = 'failed', last_error = $2, lease_until = NULL,
                         failed_at = clock_timestamp()
WHERE id = $1 AND claimed_by = $3 AND status = 'sending'
"""


# A failed attempt with attempts left: the row goes back to `pending`, due again after the
# backoff ($3), and the replica lets it go. Whichever replica polls once it is due sends it
# (CLAIM takes only due pending rows): no slot waits out a backoff. Only while this replica
# holds it: a row whose lease ran out and another replica took is that replica's.
RETRY_LATER = """
UPDATE notifications
SET status = 'pending', last_error = $2, next_attempt_at = clock_timestamp() + $3::interval,
    lease_until = NULL, claimed_by = NULL
WHERE id = $1 AND claimed_by = $4 AND status = 'sending'
"""


# Graceful stop: give back what this replica holds, to be sent by whoever polls next.
RELEASE = """
UPDATE notifications SET status = 'pending', lease_until = NULL, claimed_by = NULL
WHERE claimed_by = $1 AND status = 'sending' AND id = ANY ($2)
"""


# `tiendo notifier redrive`: failed messages sent again, each with the full number of
# attempts (`attempts_before`), due now. Rows of the pseudo-channel `none` have nowhere to
# go and stay as they are. $1 ids (NULL: any), $2 failed at or after (NULL: any).
REDRIVE = """
UPDATE notifications
SET status = 'pending', next_attempt_at = clock_timestamp(), attempts_before = attempts,
    claimed_by = NULL, lease_until = NULL, failed_at = NULL
WHERE status = 'failed' AND channel <> 'none'
  AND ($1::bigint[] IS NULL OR id = ANY ($1))
  AND ($2::timestamptz IS NULL OR failed_at >= $2)
RETURNING id, dedup_key, channel, recipient
"""


SELECT_NOTIFICATIONS = """
SELECT n.id, n.dedup_key AS delivery_id, n.kind, n.campaign_id, n.recipient, n.channel,
       n.address, n.subject, n.language, n.status, n.attempts, n.last_error, n.created_at,
       n.delivered_at, n.claimed_by, n.fallback, n.failed_at,
       coalesce((SELECT array_agg(na.alert_id ORDER BY na.alert_id)
                 FROM notification_alerts na WHERE na.notification_id = n.id),
                '{}') AS alert_ids,
       coalesce((SELECT json_agg(json_build_object(
                    'attempt', d.attempt, 'replica', d.replica,
                    'address', coalesce(d.address, n.address), 'started_at', d.started_at,
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
  -- a reader's scope: chiefs of units in its subtrees (NULL: every unit)
  AND ($8::text[] IS NULL OR n.recipient = ANY($8) OR EXISTS (
        SELECT 1 FROM units u WHERE u.code = n.recipient AND u.ancestors && $8))
ORDER BY n.id DESC
LIMIT $7
"""


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
    fallback: bool = False,
) -> int | None:
    """Queue one message to one address (`fallback`: the operators' fallback webhook, not
    a contact of the recipient's); None when its dedup key was queued already."""
    notification_id: int | None = await conn.fetchval(
        INSERT_NOTIFICATION,
        dedup_key,
        _single(alert_ids),
        kind,
        recipient,
        channel,
        address,
        json.dumps(body, ensure_ascii=False, sort_keys=True),
        group_id,
        campaign_id,
        subject,
        language,
        fallback,
    )
    if notification_id is not None and alert_ids:
        await conn.execute(INSERT_NOTIFICATION_ALERTS, notification_id, list(alert_ids))
    return notification_id


def _single(alert_ids: Sequence[int]) -> int | None:
    # a message of one alert names it on its row too (`GET /v1/notifications?alert_id=`
    # reads both)
    return alert_ids[0] if len(alert_ids) == 1 else None


async def insert_undeliverable(
    conn: Connection,
    *,
    dedup_key: str,
    kind: str,
    recipient: str,
    body: dict[str, Any],
    group_id: int | None,
    campaign_id: str,
    subject: str,
    language: str,
    error: str,
    alert_ids: Sequence[int],
) -> int | None:
    """Record a message that has no address to go to as failed (channel `none`); None when
    its dedup key was recorded already."""
    notification_id: int | None = await conn.fetchval(
        INSERT_UNDELIVERABLE,
        dedup_key,
        _single(alert_ids),
        kind,
        recipient,
        json.dumps(body, ensure_ascii=False, sort_keys=True),
        group_id,
        campaign_id,
        subject,
        language,
        error[:500],
    )
    if notification_id is not None and alert_ids:
        await conn.execute(INSERT_NOTIFICATION_ALERTS, notification_id, list(alert_ids))
    return notification_id


@dataclass(frozen=True, slots=True)
class Claimed:
    """A notification this replica holds (its lease) to deliver."""

    id: int
    delivery_id: str
    kind: str
    channel: str
    address: str  # the last address it was sent to (or queued for)
    subject: str
    body: dict[str, Any]
    attempts: int  # made so far
    last_error: str | None
    recipient: str  # the unit whose chief it is for
    fallback: bool  # the operators' copy: sent to the fallback webhook
    attempts_before: int  # made before the last redrive

    @property
    def attempts_counted(self) -> int:
        """Attempts made since the last redrive (the limit counts these)."""
        return self.attempts - self.attempts_before


@dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    number: int  # 1 for the first attempt at the notification


async def claim(conn: Connection, replica: str, lease: timedelta, limit: int) -> list[Claimed]:
    """Hold up to `limit` due notifications (or ones a crashed sender's lease left)."""
    return [
        Claimed(
            r["id"],
            r["dedup_key"],
            r["kind"],
            r["channel"],
            r["address"],
            r["subject"],
            json.loads(r["body"]) if isinstance(r["body"], str) else dict(r["body"]),
            r["attempts"],
            r["last_error"],
            r["recipient"],
            r["fallback"],
            r["attempts_before"],
        )
        for r in await conn.fetch(CLAIM, replica, lease, limit)
    ]


async def contact_address(conn: Connection, unit: str, channel: str) -> str | None:
    """The recipient's address on `channel` now; None when it has none any more."""
    address: str | None = await conn.fetchval(SELECT_CONTACT, unit, channel)
    return address


async def start_attempt(
    conn: Connection, notification_id: int, replica: str, lease: timedelta, address: str
) -> Attempt | None:
    """Write down the next attempt, to `address`; None if this replica no longer holds the
    message."""
    row = await conn.fetchrow(START_ATTEMPT, notification_id, replica, lease, address)
    return Attempt(row["id"], row["attempt"]) if row is not None else None


async def finish_attempt(conn: Connection, attempt_id: int, ok: bool, error: str | None) -> None:
    await conn.execute(FINISH_ATTEMPT, attempt_id, ok, error[:500] if error else None)


async def mark_delivered(conn: Connection, notification_id: int) -> None:
    await conn.execute(MARK_DELIVERED, notification_id)


async def retry_later(
    conn: Connection, notification_id: int, error: str | None, after: timedelta, replica: str
) -> None:
    """Back to `pending`, due again `after` from now, let go by this replica (only while
    it holds the message)."""
    await conn.execute(RETRY_LATER, notification_id, (error or "")[:500], after, replica)


async def mark_failed(conn: Connection, notification_id: int, error: str, replica: str) -> None:
    """Give up on the message (only while this replica holds it)."""
    await conn.execute(MARK_FAILED, notification_id, error[:500], replica)


async def release(conn: Connection, replica: str, ids: Sequence[int]) -> None:
    """Give back the messages this replica holds, for whoever polls next."""
    await conn.execute(RELEASE, replica, list(ids))


async def redrive(
    conn: Connection, ids: Sequence[int] | None, since: datetime | None
) -> list[asyncpg.Record]:
    """Failed messages (`ids`, or failed at or after `since`, or all: both None) due again
    now, with a fresh allowance of attempts; the rows taken."""
    return list(await conn.fetch(REDRIVE, list(ids) if ids is not None else None, since))


async def dedup_keys(conn: Connection, prefix: str) -> list[str]:
    """Dedup keys of the notifications queued under `prefix` (a digest slot)."""
    return [r["dedup_key"] for r in await conn.fetch(SELECT_DEDUP_KEYS_LIKE, like_prefix(prefix))]


async def list_notifications(
    conn: Connection,
    *,
    status: str | None,
    alert_id: int | None,
    recipient: str | None,
    channel: str | None,
    kind: str | None,
    campaign: str | None,
    limit: int,
    scope: list[str] | None = None,
) -> list[dict[str, Any]]:
    """The delivery log, newest first, with each notification's alerts and attempts; to
    chiefs of units inside `scope`'s subtrees only, when given."""
    rows = await conn.fetch(
        SELECT_NOTIFICATIONS, status, alert_id, recipient, channel, kind, campaign, limit, scope
    )
    return [dict(r) for r in rows]
