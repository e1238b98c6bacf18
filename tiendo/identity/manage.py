"""Issue, rotate and revoke identities: one path for the CLI and the admin API, each change
recorded in the audit log under the person who made it (never the secret)."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tiendo import audit
from tiendo.database import Connection
from tiendo.identity import repository, tokens
from tiendo.identity.model import Role, read_scope, scope_problems


class IdentityRefused(Exception):
    """The change cannot be made; `status` is what the admin API answers (404, 409, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Issued:
    """A new identity's secret (shown this once) and the scope stored for it: each version
    key with its unit's name (empty: every unit)."""

    secret: str
    units: dict[str, str] = field(default_factory=dict)


async def create(
    conn: Connection,
    name: str,
    role: Role,
    units: Sequence[str],
    *,
    all_units: bool,
    actor: str,
) -> Issued:
    """Create identity `name`, its scope's names read as version keys now (`read_scope`);
    returns its secret and the keys stored."""
    roots = list(dict.fromkeys(units))
    if problems := scope_problems(role, roots, all_units):
        raise IdentityRefused(422, "; ".join(problems))
    secret = tokens.new_token()
    async with conn.transaction():
        if await repository.exists(conn, name):
            raise IdentityRefused(409, f"an identity named {name} exists (names are never reused)")
        # A typo would make a reader who sees nothing, and a code read as a retired version
        # one who sees the wrong unit; say so now, not at 404 time. Wall time, as the guard
        # reads an identity provider's unit names: a scope is about the real tree.
        now = datetime.now(UTC)
        scope = read_scope(await repository.units_named(conn, roots, now), now)
        if scope.problems:
            raise IdentityRefused(422, "; ".join(scope.problems))
        await repository.insert(conn, name, role, scope.keys, tokens.digest(secret))
        await audit.record(
            conn,
            actor=actor,
            action="identity.create",
            subject=name,
            details={"role": role.value, "units": scope.keys or "all", "given": roots},
        )
    return Issued(secret, scope.names)


async def issue(
    conn: Connection,
    name: str,
    role: Role,
    units: Sequence[str],
    *,
    all_units: bool,
    actor: str,
) -> str:
    """Create identity `name` (as `create`); returns its secret alone."""
    issued = await create(conn, name, role, units, all_units=all_units, actor=actor)
    return issued.secret


async def rotate(conn: Connection, name: str, *, grace_seconds: float, actor: str) -> str:
    """Give `name` a new secret (returned once); the old one works `grace_seconds` longer."""
    if grace_seconds < 0:
        raise IdentityRefused(422, "grace must be 0 or more seconds")
    secret = tokens.new_token()
    async with conn.transaction():
        if not await repository.rotate(conn, name, tokens.digest(secret), grace_seconds):
            raise IdentityRefused(404, f"no active identity named {name}")
        await audit.record(
            conn,
            actor=actor,
            action="identity.rotate",
            subject=name,
            details={"grace": grace_seconds},
        )
    return secret


async def revoke(conn: Connection, name: str, *, actor: str) -> None:
    async with conn.transaction():
        if not await repository.revoke(conn, name):
            raise IdentityRefused(404, f"no active identity named {name}")
        await audit.record(conn, actor=actor, action="identity.revoke", subject=name, details={})
