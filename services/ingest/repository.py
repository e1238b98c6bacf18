"""Ingest's SQL: the catalogue it validates against and the tokens it owns. Callers own
the transaction; nothing here commits."""

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.ingest.validation import Successor, UnitVersion
from tiendo.database import Connection
from tiendo.identity.repository import revoke_sql, rotate_sql

SELECT_UNITS = "SELECT code, ancestors FROM units"
# Every version with its period (-infinity reads as None), and the crosswalk: what ingest
# attributes a sent code by at the event's moment (docs/units-over-time.md).
SELECT_VERSIONS = """
SELECT code, admin_code, name, nullif(valid_from, '-infinity') AS valid_from, valid_to,
       grace_until
FROM units
"""
SELECT_TRANSFERS = "SELECT old_unit, new_unit, transfer FROM unit_transfers"
SELECT_INDICATORS = "SELECT code FROM indicators"
# Each active token once under its current hash, and again under the hash it replaced
# while that one's grace period lasts.
SELECT_ACTIVE_TOKENS = """
SELECT name, token_sha256 AS digest, units, indicators, NULL::timestamptz AS valid_until
FROM ingest_tokens WHERE revoked_at IS NULL
UNION ALL
SELECT name, previous_sha256, units, indicators, previous_valid_until
FROM ingest_tokens
WHERE revoked_at IS NULL AND previous_sha256 IS NOT NULL AND previous_valid_until > now()
"""
SELECT_TOKEN = f"SELECT * FROM ({SELECT_ACTIVE_TOKENS}) t WHERE digest = $1"
SELECT_TOKEN_EXISTS = "SELECT 1 FROM ingest_tokens WHERE name = $1"
INSERT_TOKEN = """
INSERT INTO ingest_tokens (name, token_sha256, units, indicators) VALUES ($1, $2, $3, $4)
"""
ROTATE_TOKEN = rotate_sql("ingest_tokens")
REVOKE_TOKEN = revoke_sql("ingest_tokens")
SELECT_TOKENS = """
SELECT name, token_sha256, units, indicators, created_at, rotated_at, revoked_at,
       CASE WHEN previous_valid_until > now() THEN previous_valid_until END AS previous_valid_until
FROM ingest_tokens ORDER BY name
"""
SELECT_KNOWN_UNITS = "SELECT code FROM units WHERE code = ANY($1::text[])"
SELECT_KNOWN_INDICATORS = "SELECT code FROM indicators WHERE code = ANY($1::text[])"


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a token may do. `valid_until` is set for a rotated-out token in its grace period."""

    name: str
    digest: bytes
    units: frozenset[str]
    indicators: frozenset[str]
    valid_until: datetime | None = None


def _grant(row: asyncpg.Record) -> TokenGrant:
    return TokenGrant(
        name=row["name"],
        digest=bytes(row["digest"]),
        units=frozenset(row["units"]),
        indicators=frozenset(row["indicators"]),
        valid_until=row["valid_until"],
    )


async def load_units(conn: Connection) -> dict[str, tuple[str, ...]]:
    return {r["code"]: tuple(r["ancestors"]) for r in await conn.fetch(SELECT_UNITS)}


async def load_versions(conn: Connection) -> dict[str, tuple[UnitVersion, ...]]:
    """The versions of each official code, oldest first, with where closed ones went."""
    rows = await conn.fetch(SELECT_VERSIONS)
    named = {r["code"]: Successor(r["code"], r["admin_code"], r["name"]) for r in rows}
    went: dict[str, list[Successor]] = {}
    whole: dict[str, str] = {}
    for t in await conn.fetch(SELECT_TRANSFERS):
        went.setdefault(t["old_unit"], []).append(named[t["new_unit"]])
        if t["transfer"] == "whole":
            whole[t["old_unit"]] = t["new_unit"]
    versions: dict[str, list[UnitVersion]] = {}
    for r in sorted(rows, key=lambda r: (r["valid_from"] is not None, r["valid_from"] or 0)):
        versions.setdefault(r["admin_code"], []).append(
            UnitVersion(
                key=r["code"],
                valid_from=r["valid_from"],
                valid_to=r["valid_to"],
                grace_until=r["grace_until"],
                whole=whole.get(r["code"]),
                successors=tuple(sorted(went.get(r["code"], []), key=lambda s: s.code)),
            )
        )
    return {code: tuple(vs) for code, vs in versions.items()}


async def load_indicators(conn: Connection) -> frozenset[str]:
    return frozenset(r["code"] for r in await conn.fetch(SELECT_INDICATORS))


async def load_tokens(conn: Connection) -> dict[bytes, TokenGrant]:
    grants = [_grant(r) for r in await conn.fetch(SELECT_ACTIVE_TOKENS)]
    return {g.digest: g for g in grants}


async def find_token(conn: Connection, digest: bytes) -> TokenGrant | None:
    row = await conn.fetchrow(SELECT_TOKEN, digest)
    return _grant(row) if row else None


async def token_exists(conn: Connection, name: str) -> bool:
    """Whether a token of that name was ever issued (names are never reused)."""
    return await conn.fetchval(SELECT_TOKEN_EXISTS, name) is not None


async def insert_token(
    conn: Connection, name: str, digest: bytes, units: list[str], indicators: list[str]
) -> None:
    await conn.execute(INSERT_TOKEN, name, digest, units, indicators)


async def rotate_token(conn: Connection, name: str, digest: bytes, grace_seconds: float) -> bool:
    """Give token `name` the hash `digest`; the old one stays valid `grace_seconds` longer."""
    return str(await conn.execute(ROTATE_TOKEN, name, digest, float(grace_seconds))) != "UPDATE 0"


async def revoke_token(conn: Connection, name: str) -> bool:
    return str(await conn.execute(REVOKE_TOKEN, name)) != "UPDATE 0"


async def list_tokens(conn: Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_TOKENS))


async def unknown_units(conn: Connection, codes: list[str]) -> list[str]:
    known = {r["code"] for r in await conn.fetch(SELECT_KNOWN_UNITS, codes)}
    return [c for c in codes if c not in known]


async def unknown_indicators(conn: Connection, codes: list[str]) -> list[str]:
    known = {r["code"] for r in await conn.fetch(SELECT_KNOWN_INDICATORS, codes)}
    return [c for c in codes if c not in known]


# What the aggregator made of an event (its views, migration 009), for its sender.
SELECT_RECEIPT = """
SELECT unit, indicator, counted, duplicates, applied_at
FROM aggregator_read.event_receipts WHERE event_id = $1
"""
SELECT_DEAD_LETTERS = """
SELECT unit, indicator, reason, created_at, redriven_at
FROM aggregator_read.event_dead_letters WHERE event_id = $1
ORDER BY created_at
"""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    unit: str
    indicator: str
    counted: bool
    duplicates: int
    applied_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetterSeen:
    unit: str | None
    indicator: str | None
    reason: str
    created_at: datetime
    redriven_at: datetime | None


async def stored_event(conn: Connection, event_id: str) -> StoredEvent | None:
    row = await conn.fetchrow(SELECT_RECEIPT, event_id)
    return StoredEvent(**dict(row)) if row else None


async def dead_letters_of(conn: Connection, event_id: str) -> list[DeadLetterSeen]:
    return [DeadLetterSeen(**dict(r)) for r in await conn.fetch(SELECT_DEAD_LETTERS, event_id)]
