"""Reference data the notifier reads or owns: policies, silences, audit, names, contacts."""

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from tiendo import audit
from tiendo.database import Connection

SELECT_POLICIES = "SELECT campaign_id, config FROM alert_policies"


SELECT_POLICY = "SELECT config FROM alert_policies WHERE campaign_id = $1"


UPSERT_POLICY = """
INSERT INTO alert_policies (campaign_id, config, updated_at, updated_by)
VALUES ($1, $2, now(), $3)
ON CONFLICT (campaign_id) DO UPDATE
SET config = EXCLUDED.config, updated_at = now(), updated_by = EXCLUDED.updated_by
"""


# Every admin change (aggregator or notifier) writes one audit row: its last id is a cheap
# version of the reference data.
SELECT_REFERENCE_VERSION = "SELECT coalesce(max(id), 0) FROM audit_log"


SELECT_CAMPAIGN_NAMES = "SELECT id, name, timezone FROM campaigns"


SELECT_INDICATOR_NAMES = "SELECT code, name, name_en FROM indicators"


UNIT = """
SELECT code, name, level, parent_code, ancestors, chief_name, chief_email, chief_webhook,
       chief_chat
FROM units WHERE code = $1
"""


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


async def policies(conn: Connection) -> dict[str, dict[str, Any]]:
    return {r["campaign_id"]: json.loads(r["config"]) for r in await conn.fetch(SELECT_POLICIES)}


async def policy(conn: Connection, campaign_id: str) -> dict[str, Any] | None:
    config = await conn.fetchval(SELECT_POLICY, campaign_id)
    return json.loads(config) if config is not None else None


async def save_policy(
    conn: Connection, campaign_id: str, config: dict[str, Any], actor: str
) -> None:
    await conn.execute(UPSERT_POLICY, campaign_id, json.dumps(config), actor)
    await audit.record(
        conn, actor=actor, action="alert_policy.put", subject=campaign_id, details=config
    )


async def campaign_names(conn: Connection) -> dict[str, asyncpg.Record]:
    return {r["id"]: r for r in await conn.fetch(SELECT_CAMPAIGN_NAMES)}


async def indicator_names(conn: Connection) -> dict[str, asyncpg.Record]:
    return {r["code"]: r for r in await conn.fetch(SELECT_INDICATOR_NAMES)}


async def unit(conn: Connection, code: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(UNIT, code)
    return row


async def active_silences(conn: Connection, at: datetime) -> list[asyncpg.Record]:
    return list(await conn.fetch(ACTIVE_SILENCES, at))


async def reachable_units(conn: Connection, codes: Sequence[str]) -> list[asyncpg.Record]:
    return list(await conn.fetch(REACHABLE_UNITS, list(codes)))


async def reference_version(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        version: int = await conn.fetchval(SELECT_REFERENCE_VERSION)
    return version


async def create_silence(
    conn: Connection,
    *,
    campaign: str | None,
    unit: str | None,
    indicator: str | None,
    rule: str | None,
    starts_at: datetime,
    ends_at: datetime,
    created_by: str,
    comment: str,
    actor: str,
) -> dict[str, Any]:
    """Store a silence and audit it; the stored row."""
    row = await conn.fetchrow(
        INSERT_SILENCE, campaign, unit, indicator, rule, starts_at, ends_at, created_by, comment
    )
    assert row is not None  # INSERT … RETURNING
    silence = dict(row)
    await audit.record(
        conn, actor=actor, action="silence.create", subject=str(silence["id"]), details=silence
    )
    return silence


async def list_silences(
    conn: Connection, *, active: bool | None, at: datetime, limit: int
) -> list[dict[str, Any]]:
    """Silences, newest first; `active`: only those not ended at `at`."""
    return [dict(r) for r in await conn.fetch(SELECT_SILENCES, active, at, limit)]


async def expire_silence(conn: Connection, silence_id: int, at: datetime, actor: str) -> bool:
    """End a silence at `at` and audit it; False when it had already ended, LookupError
    when there is no such silence."""
    if await conn.fetchrow(EXPIRE_SILENCE, silence_id, at) is None:
        if await conn.fetchrow(SELECT_SILENCE, silence_id) is None:
            raise LookupError(f"no silence {silence_id}")
        return False
    await audit.record(
        conn, actor=actor, action="silence.expire", subject=str(silence_id), details={}
    )
    return True
