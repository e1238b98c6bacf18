"""Webhook signing secrets, one current per endpoint, older ones until their overlap ends."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from tiendo import audit
from tiendo.database import Connection


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A secret as listed: never the secret itself."""

    id: int
    endpoint: str
    created_at: datetime
    created_by: str
    retires_at: datetime | None  # None: the current one


# Newest first: the current secret's signature leads the header.
SIGNING_SECRETS = """
SELECT secret FROM webhook_secrets
WHERE endpoint = $1 AND (retires_at IS NULL OR retires_at > clock_timestamp())
ORDER BY id DESC
"""


INSERT_SIGNING_KEY = """
INSERT INTO webhook_secrets (endpoint, secret, created_by) VALUES ($1, $2, $3) RETURNING id
"""


# The current secret starts its overlap; one already retiring keeps the earlier end.
START_OVERLAP = """
UPDATE webhook_secrets
SET retires_at = clock_timestamp() + $2::interval
WHERE endpoint = $1 AND retires_at IS NULL
RETURNING id
"""


# Secrets that sign nothing any more are kept no longer than they are needed.
DELETE_RETIRED = """
DELETE FROM webhook_secrets
WHERE endpoint = $1 AND retires_at IS NOT NULL AND ($2 OR retires_at <= clock_timestamp())
RETURNING id
"""


SELECT_SECRETS = """
SELECT id, endpoint, created_at, created_by, retires_at FROM webhook_secrets
WHERE ($1::text IS NULL OR endpoint = $1)
  AND (retires_at IS NULL OR retires_at > clock_timestamp())
ORDER BY endpoint, id
"""


SELECT_CURRENT = "SELECT 1 FROM webhook_secrets WHERE endpoint = $1 AND retires_at IS NULL"


SELECT_WEBHOOK_OF_UNIT = "SELECT address FROM contacts WHERE unit = $1 AND channel = 'webhook'"


async def signing_secrets(conn: Connection, endpoint: str) -> tuple[str, ...]:
    """The secrets that sign a message to `endpoint` now, current first (empty: none)."""
    return tuple(r["secret"] for r in await conn.fetch(SIGNING_SECRETS, endpoint))


async def has_current(conn: Connection, endpoint: str) -> bool:
    """Whether the endpoint has a current secret (one not in an overlap)."""
    return await conn.fetchval(SELECT_CURRENT, endpoint) is not None


async def add(conn: Connection, endpoint: str, secret: str, actor: str, action: str) -> int:
    """Store `secret` as the endpoint's current one and audit it (the secret stays out of
    the audit log); the caller has retired or checked the previous current one."""
    await conn.execute(DELETE_RETIRED, endpoint, False)
    secret_id: int = await conn.fetchval(INSERT_SIGNING_KEY, endpoint, secret, actor)
    await audit.record(
        conn, actor=actor, action=action, subject=endpoint, details={"secret_id": secret_id}
    )
    return secret_id


async def start_overlap(conn: Connection, endpoint: str, overlap: timedelta) -> list[int]:
    """Give the endpoint's current secret `overlap` more time to sign; its id (or none)."""
    return [r["id"] for r in await conn.fetch(START_OVERLAP, endpoint, overlap)]


async def retire_previous(conn: Connection, endpoint: str, actor: str) -> list[int]:
    """End the overlap now: every secret but the current one stops signing; their ids."""
    ids = [r["id"] for r in await conn.fetch(DELETE_RETIRED, endpoint, True)]
    await audit.record(
        conn,
        actor=actor,
        action="webhook_secret.retire",
        subject=endpoint,
        details={"secret_ids": ids},
    )
    return ids


async def listing(conn: Connection, endpoint: str | None = None) -> list[SecretInfo]:
    """Secrets that still sign, by endpoint, oldest first."""
    return [SecretInfo(**dict(r)) for r in await conn.fetch(SELECT_SECRETS, endpoint)]


async def webhook_of_unit(conn: Connection, unit: str) -> str | None:
    """The unit chief's webhook URL (the `webhook` contact), if they have one."""
    address: str | None = await conn.fetchval(SELECT_WEBHOOK_OF_UNIT, unit)
    return address
