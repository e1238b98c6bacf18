"""Ingest's SQL: tokens (its own table) and the unit/indicator catalogue (read only)."""

from dataclasses import dataclass

import asyncpg

from tiendo.database import Connection

SELECT_UNITS = "SELECT code, ancestors FROM units"
SELECT_INDICATORS = "SELECT code FROM indicators"
SELECT_ACTIVE_TOKENS = """
SELECT name, token_sha256, units, indicators FROM ingest_tokens WHERE revoked_at IS NULL
"""
SELECT_TOKEN = """
SELECT name, token_sha256, units, indicators FROM ingest_tokens
WHERE token_sha256 = $1 AND revoked_at IS NULL
"""
INSERT_TOKEN = """
INSERT INTO ingest_tokens (name, token_sha256, units, indicators) VALUES ($1, $2, $3, $4)
"""
REVOKE_TOKEN = """
UPDATE ingest_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL
"""
SELECT_TOKENS = """
SELECT name, units, indicators, created_at, revoked_at FROM ingest_tokens ORDER BY name
"""
INSERT_AUDIT = "INSERT INTO audit_log (actor, action, subject, details) VALUES ($1, $2, $3, $4)"


@dataclass(frozen=True, slots=True)
class TokenGrant:
    name: str
    digest: bytes
    units: frozenset[str]
    indicators: frozenset[str]


def _grant(row: asyncpg.Record) -> TokenGrant:
    return TokenGrant(
        name=row["name"],
        digest=bytes(row["token_sha256"]),
        units=frozenset(row["units"]),
        indicators=frozenset(row["indicators"]),
    )


async def load_units(conn: Connection) -> dict[str, tuple[str, ...]]:
    return {r["code"]: tuple(r["ancestors"]) for r in await conn.fetch(SELECT_UNITS)}


async def load_indicators(conn: Connection) -> frozenset[str]:
    return frozenset(r["code"] for r in await conn.fetch(SELECT_INDICATORS))


async def load_tokens(conn: Connection) -> dict[bytes, TokenGrant]:
    grants = [_grant(r) for r in await conn.fetch(SELECT_ACTIVE_TOKENS)]
    return {g.digest: g for g in grants}


async def find_token(conn: Connection, digest: bytes) -> TokenGrant | None:
    row = await conn.fetchrow(SELECT_TOKEN, digest)
    return _grant(row) if row else None


async def insert_token(
    conn: Connection, name: str, digest: bytes, units: list[str], indicators: list[str]
) -> None:
    await conn.execute(INSERT_TOKEN, name, digest, units, indicators)


async def revoke_token(conn: Connection, name: str) -> bool:
    return str(await conn.execute(REVOKE_TOKEN, name)) != "UPDATE 0"


async def list_tokens(conn: Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_TOKENS))


async def audit(conn: Connection, actor: str, action: str, subject: str, details: str) -> None:
    """Record an admin action; `details` is a JSON document."""
    await conn.execute(INSERT_AUDIT, actor, action, subject, details)
