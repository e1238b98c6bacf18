"""Every service's migrations, in the order a whole database is built: one list for the
tools that build one (tests, the demo, the replay, the benchmarks). Each service still
migrates its own tables when it starts, from the same declaration."""

from services import aggregator, ingest, notifier
from tiendo.database import Connection, Migrations

MIGRATIONS: tuple[Migrations, ...] = (
    ingest.MIGRATIONS,
    aggregator.MIGRATIONS,
    notifier.MIGRATIONS,
)


def every_set() -> list[Migrations]:
    """Every set of migrations once, in the order a whole database is built."""
    ordered: list[Migrations] = []
    for migrations in MIGRATIONS:
        ordered += [m for m in migrations.chain() if m not in ordered]
    return ordered


async def migrate_all(conn: Connection) -> None:
    """Apply every service's pending migrations (the shared ones once, first)."""
    for migrations in MIGRATIONS:
        await migrations.apply(conn)
