"""Credentials for the suite: an administrator, an HQ reader and an auditor in every test
database (seeded into the template), and identities of any role and scope on demand."""

import asyncpg

from tiendo.identity import repository, tokens
from tiendo.identity.model import Role

# Fresh per test process: real 256-bit secrets, only their hashes in the databases.
ADMIN_SECRET = tokens.new_token()
READER_SECRET = tokens.new_token()
AUDITOR_SECRET = tokens.new_token()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


ADMIN = bearer(ADMIN_SECRET)
READER = bearer(READER_SECRET)  # a reader of every unit (HQ)
AUDITOR = bearer(AUDITOR_SECRET)


async def seed_identities(conn: asyncpg.Connection) -> None:
    """The suite's standing identities (the template database gets them once)."""
    for name, role, secret in (
        ("test-admin", Role.admin, ADMIN_SECRET),
        ("test-reader", Role.reader, READER_SECRET),
        ("test-auditor", Role.auditor, AUDITOR_SECRET),
    ):
        await repository.insert(conn, name, role, [], tokens.digest(secret))


async def issue_identity(dsn: str, name: str, role: Role, units: list[str] | None = None) -> str:
    """A new identity in the test's database; its secret."""
    secret = tokens.new_token()
    conn = await asyncpg.connect(dsn)
    try:
        await repository.insert(conn, name, role, units or [], tokens.digest(secret))
    finally:
        await conn.close()
    return secret
