"""Every service's migrations, in the order a whole database is built: one list for the
tools that build one (tests, the demo, the replay, the benchmarks). Each service still
migrates its own tables when it starts."""

from tiendo.database import Connection, migrate

MIGRATIONS = (
    ("tiendo", "tiendo"),
    ("ingest", "services.ingest"),
    ("aggregator", "services.aggregator"),
    ("notifier", "services.notifier"),
)


async def migrate_all(conn: Connection) -> None:
    """Apply every service's pending migrations."""
    for service, package in MIGRATIONS:
        await migrate(conn, service, package)
