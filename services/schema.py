"""Every service's migrations, in the order a whole database is built: one list for the
tools that build one (tests, the demo, the replay, the benchmarks). Each service still
migrates its own tables when it starts, from the same declaration, when it is logged in as
the database owner; logged in as its own role it only checks that they are applied, and
`tiendo migrate` applies them as the owner (docs/startup.md)."""

import asyncpg

from services import aggregator, ingest, notifier
from tiendo.database import Connection, Migrations, collation
from tiendo.logs import get_logger
from tiendo.startup import wait_for_postgres

log = get_logger(__name__)

MIGRATIONS: tuple[Migrations, ...] = (
    ingest.MIGRATIONS,
    aggregator.MIGRATIONS,
    notifier.MIGRATIONS,
)


async def migrate_all(conn: Connection) -> None:
    """Apply every service's pending migrations (the shared ones once, first)."""
    for migrations in MIGRATIONS:
        await migrations.apply(conn)


async def migrate_database(dsn: str, wait_seconds: float = 120.0) -> None:
    """`tiendo migrate`: wait for PostgreSQL at `dsn` (the owner's), then apply every
    service's pending migrations; services logged in as their roles then start."""
    await wait_for_postgres(dsn, wait_seconds)
    conn = await asyncpg.connect(dsn)
    try:
        if (named := await collation(conn)) not in ("C", "POSIX"):
            # It counts as well, only slower: every text key of the apply compared through
            # the locale (docs/startup.md).
            log.warning(
                "database_collation_not_c",
                collation=named,
                advice="create the database with LC_COLLATE 'C' (initdb --lc-collate=C)",
            )
        await migrate_all(conn)
    finally:
        await conn.close()
