"""Issue, rotate and revoke identities: one path for the CLI and the admin API, each change
recorded in the audit log under the person who made it (never the secret)."""

from collections.abc import Sequence

from tiendo import audit
from tiendo.database import Connection
from tiendo.identity import repository, tokens
from tiendo.identity.model import Role, scope_problems


class IdentityRefused(Exception):
    """The change cannot be made; `status` is what the admin API answers (404, 409, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def issue(
    conn: Connection,
    name: str,
    role: Role,
    units: Sequence[str],
    *,
    all_units: bool,
    actor: str,
) -> str:
    """Create identity `name`; returns its secret, the one time it is shown."""
    roots = list(dict.fromkeys(units))
    if problems := scope_problems(role, roots, all_units):
        raise IdentityRefused(422, "; ".join(problems))
    secret = tokens.new_token()
    async with conn.transaction():
        if await repository.exists(conn, name):
            raise IdentityRefused(409, f"an identity named {name} exists (names are never reused)")
        # A typo would make a reader who sees nothing; say so now, not at 404 time.
        if missing := await repository.unknown_units(conn, roots):
            raise IdentityRefused(422, f"unknown unit code(s): {', '.join(missing)}")
        await repository.insert(conn, name, role, roots, tokens.digest(secret))
        await audit.record(
            conn,
            actor=actor,
            action="identity.create",
            subject=name,
            details={"role": role.value, "units": roots or "all"},
        )
    return secret


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
