"""SQL of `auth.identities`. Callers own the transaction; nothing here commits."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from tiendo.database import Connection
from tiendo.identity.model import Identity, NamedUnit, Role

# Each active identity once under its current hash, and again under the hash it replaced
# while that one's grace period lasts.
SELECT_ACTIVE = """
SELECT name, role, units, token_sha256 AS digest, NULL::timestamptz AS valid_until
FROM auth.identities WHERE revoked_at IS NULL
UNION ALL
SELECT name, role, units, previous_sha256, previous_valid_until
FROM auth.identities
WHERE revoked_at IS NULL AND previous_sha256 IS NOT NULL AND previous_valid_until > now()
"""
# Ingest's tokens, as ingest's migrations let the other services see them (name and hash):
# enough to answer a wrong role with 403. Absent until ingest has migrated.
SELECT_INGEST = """
SELECT name, 'ingest' AS role, '{}'::text[] AS units, digest, valid_until
FROM auth.ingest_credentials
"""
HAS_INGEST = "SELECT to_regclass('auth.ingest_credentials') IS NOT NULL"
SELECT_EXISTS = "SELECT 1 FROM auth.identities WHERE name = $1"
INSERT = "INSERT INTO auth.identities (name, role, units, token_sha256) VALUES ($1, $2, $3, $4)"


def rotate_sql(table: str) -> str:
    """Give row `$1` the hash `$2`; the replaced hash stays valid `$3` seconds (0: at once).
    Shared with ingest's tokens, which rotate the same way."""
    return f"""
UPDATE {table}
SET previous_sha256 = CASE WHEN $3::float8 > 0 THEN token_sha256 END,
    previous_valid_until = CASE
        WHEN $3::float8 > 0 THEN now() + make_interval(secs => $3::float8)
    END,
    token_sha256 = $2,
    rotated_at = now()
WHERE name = $1 AND revoked_at IS NULL
"""


def revoke_sql(table: str) -> str:
    """Revoke row `$1` for good, the secret a rotation replaced with it."""
    return f"""
UPDATE {table}
SET revoked_at = now(), previous_sha256 = NULL, previous_valid_until = NULL
WHERE name = $1 AND revoked_at IS NULL
"""


ROTATE = rotate_sql("auth.identities")
REVOKE = revoke_sql("auth.identities")
SELECT_ALL = """
SELECT name, role, units, token_sha256, created_at, rotated_at, revoked_at,
       CASE WHEN previous_valid_until > now() THEN previous_valid_until END AS previous_valid_until
FROM auth.identities ORDER BY name
"""
# The version each name of a reader's scope means at $2, read as every unit path reads a
# name (`tiendo.board.repository.SELECT_VERSION_NAMED`: a key exactly; an official code its
# version in force, else the version it keys), with whether that version is in force:
# `model.read_scope` refuses a code that names none. Stated again here because the shared
# library may not import the board (tests/house/test_layers.py);
# tests/access/test_scopes_by_version.py holds the two readings equal over Hà Nội's codes.
SELECT_UNITS_NAMED = """
SELECT n.name, v.code AS key, v.name AS unit_name,
       coalesce(v.valid_from <= $2 AND $2 < coalesce(v.valid_to, 'infinity'), false)
           AS in_force,
       nullif(v.valid_from, '-infinity') AS valid_from, v.valid_to
FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i)
LEFT JOIN LATERAL (
    SELECT code, name, valid_from, valid_to FROM units
    WHERE code = n.name
       OR (admin_code = n.name AND valid_from <= $2 AND $2 < coalesce(valid_to, 'infinity'))
    ORDER BY (admin_code = n.name AND valid_from <= $2 AND $2 < coalesce(valid_to, 'infinity'))
             DESC,
             code
    LIMIT 1
) v ON true
ORDER BY n.i
"""


@dataclass(frozen=True, slots=True)
class Listed:
    """An identity as `list` shows it: never a secret, a fingerprint of its hash."""

    name: str
    role: str
    state: str  # active, rotating (the old secret still works) or revoked
    units: list[str]
    fingerprint: str
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None
    old_secret_valid_until: datetime | None


def _identity(row: asyncpg.Record) -> tuple[bytes, Identity]:
    identity = Identity(
        name=row["name"],
        role=Role(row["role"]),
        units=frozenset(row["units"]),
        valid_until=row["valid_until"],
    )
    return bytes(row["digest"]), identity


async def _active_sql(conn: Connection) -> str:
    return (
        f"{SELECT_ACTIVE} UNION ALL {SELECT_INGEST}"
        if await conn.fetchval(HAS_INGEST)
        else SELECT_ACTIVE
    )


async def load_active(conn: Connection) -> dict[bytes, Identity]:
    """Every working secret's identity by its hash, ingest's tokens included."""
    return dict(_identity(r) for r in await conn.fetch(await _active_sql(conn)))


async def find(conn: Connection, digest: bytes) -> Identity | None:
    sql = f"SELECT * FROM ({await _active_sql(conn)}) i WHERE digest = $1"
    row = await conn.fetchrow(sql, digest)
    return _identity(row)[1] if row else None


async def exists(conn: Connection, name: str) -> bool:
    """Whether an identity of that name was ever issued (names are never reused)."""
    return await conn.fetchval(SELECT_EXISTS, name) is not None


async def insert(conn: Connection, name: str, role: Role, units: list[str], digest: bytes) -> None:
    await conn.execute(INSERT, name, role.value, units, digest)


async def rotate(conn: Connection, name: str, digest: bytes, grace_seconds: float) -> bool:
    """Give `name` the hash `digest`; the old one stays valid `grace_seconds` longer."""
    return str(await conn.execute(ROTATE, name, digest, float(grace_seconds))) != "UPDATE 0"


async def revoke(conn: Connection, name: str) -> bool:
    return str(await conn.execute(REVOKE, name)) != "UPDATE 0"


async def listing(conn: Connection) -> list[Listed]:
    out = []
    for r in await conn.fetch(SELECT_ALL):
        state = (
            "revoked" if r["revoked_at"] else "rotating" if r["previous_valid_until"] else "active"
        )
        out.append(
            Listed(
                name=r["name"],
                role=r["role"],
                state=state,
                units=list(r["units"]),
                fingerprint=bytes(r["token_sha256"]).hex()[:12],
                created_at=r["created_at"],
                rotated_at=r["rotated_at"],
                revoked_at=r["revoked_at"],
                old_secret_valid_until=r["previous_valid_until"],
            )
        )
    return out


async def units_named(conn: Connection, names: Sequence[str], at: datetime) -> list[NamedUnit]:
    """What each name of a reader's scope finds on the tree at `at`, in the order given."""
    return [
        NamedUnit(
            name=r["name"],
            key=r["key"],
            unit_name=r["unit_name"],
            in_force=r["in_force"],
            valid_from=r["valid_from"],
            valid_to=r["valid_to"],
        )
        for r in await conn.fetch(SELECT_UNITS_NAMED, list(names), at)
    ]
