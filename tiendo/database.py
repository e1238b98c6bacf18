"""asyncpg pool and the numbered-SQL-file migration runner shared by the services."""

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Final, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from asyncpg.transaction import Transaction
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from tiendo.logs import get_logger

# The largest value of a bigint column (row ids): an id a request names beyond it is
# refused as out of range (422), never sent to the database, whose driver cannot encode it.
BIGINT_MAX = 2**63 - 1

log = get_logger(__name__)


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching the texts that start with `prefix`, taken literally: `_` and
    `%` are wildcards of LIKE, and ids may hold `_` (a digest slot's prefix of campaign
    `c_1` matched campaign `c-1`'s keys, so its chiefs' digests counted as sent)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


# What repository functions take: a plain connection or one borrowed from a pool.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


async def fetch_planned_each_time(
    conn: Connection, query: str, *args: object
) -> list[asyncpg.Record]:
    """`conn.fetch`, planned for these arguments every time. A statement over a list of
    codes is prepared once per connection, and after its fifth run PostgreSQL may settle
    on a generic plan that cannot see the list's length: a leaderboard's read of ten
    thousand communes' rollups went from 60 ms to 300-400 ms on every pooled connection
    (SET LOCAL: the caller's transaction if there is one, else this one)."""
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        return await conn.fetch(query, *args)


# Named with its schema: the ledger must be found whatever the session's search path, and
# a role that may not create in `public` must be able to read it (created only when missing).
_LEDGER = "public.schema_migrations"
_CREATE_LEDGER = f"""
CREATE TABLE {_LEDGER} (
    service    text        NOT NULL,
    version    text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, version)
)
"""
# Migrations create roles and schemas and move tables: only the database's owner (or a
# member of its role, or a superuser) may apply them. A service logged in as its own role
# only checks that they are applied.
_MAY_MIGRATE = """
SELECT r.rolsuper OR pg_has_role(current_user, d.datdba, 'MEMBER')
FROM pg_roles r, pg_database d
WHERE r.rolname = current_user AND d.datname = current_database()
"""
# Services start concurrently in `make dev`; one lock id for all migrations serialises them.
_MIGRATION_LOCK = 7_301_117


class MigrationsPending(RuntimeError):
    """Migrations are pending and the connected role may not apply them."""

    def __init__(self, service: str, files: list[str]) -> None:
        super().__init__(
            "migrations pending: run `tiendo migrate` as the database owner"
            f" ({service}: {', '.join(files)})"
        )
        self.service = service
        self.files = files


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, wait_seconds: float = 60.0
) -> asyncpg.Pool:
    """Open a pool, waiting (with backoff) for a database that is still starting."""
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(wait_seconds),
        wait=wait_exponential(multiplier=0.2, max=3),
        retry=retry_if_exception_type((OSError, asyncpg.CannotConnectNowError)),
        reraise=True,
    ):
        with attempt:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, command_timeout=60
            )
            return pool
    raise AssertionError("unreachable")


# The isolation of a read whose figures must agree with one another: every statement of a
# REPEATABLE READ transaction reads the snapshot its first one took.
ONE_STATE: Final = "repeatable_read"


def one_state(conn: Connection) -> Transaction:
    """A transaction whose statements all read one state of the database: the counters, the
    day rollups and `history_reach` a figure is worked out from, as they were at one
    instant. Between two READ COMMITTED statements another replica's batch may commit, and
    a value a run-rate window ago worked out from counters without it and rollups with it
    would be short by that batch (and kept for minutes by the readers that keep such
    values).

    For reads, and for writes no other transaction makes after the snapshot: a REPEATABLE
    READ transaction fails ("could not serialize access") where it updates or deletes a
    row that another committed after its snapshot, and does not see a row another
    inserted. The aggregator's snapshot pass rewrites `board_figures` and the comparisons
    in one, its replicas taking their turns before their snapshots (`taking_turns`); the
    notifier stores a briefing's ranks, which replicas store in turns too, outside one."""
    return conn.transaction(isolation=ONE_STATE)


# How long a request holding one connection may wait for a second that the pool said was
# free: opening it takes a few milliseconds; longer only when another request took it
# first, and then it is not waited for.
SPARE_WAIT_SECONDS = 1.0


@asynccontextmanager
async def spare_connection(
    pool: asyncpg.Pool | None, wanted: bool = True, sharing: "Connection | None" = None
) -> "AsyncIterator[Connection | None]":
    """A second connection for a request that already holds one, when the pool has one
    free, open or still to open (None when it has not, or when not `wanted` or no pool:
    the caller then reads on its one). Never waited for: requests each holding one
    connection and waiting for a second would wait for each other once the pool ran out.

    `sharing`: the request's connection, in a `one_state` transaction; the spare one reads
    that transaction's snapshot (`pg_export_snapshot`), so what either reads is of one
    state."""
    if pool is None or not wanted or pool.get_size() - pool.get_idle_size() >= pool.get_max_size():
        yield None
        return
    try:
        conn = await pool.acquire(timeout=SPARE_WAIT_SECONDS)
    except TimeoutError:
        yield None
        return
    try:
        if sharing is None:
            yield conn
            return
        snapshot = await sharing.fetchval("SELECT pg_export_snapshot()")
        async with conn.transaction(isolation=ONE_STATE):
            # before the transaction's first query, as PostgreSQL requires
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            yield conn
    finally:
        await pool.release(conn)


def migration_files(package: str) -> list[Traversable]:
    """The `NNN_name.sql` files of `<package>.migrations`, in order."""
    folder = resources.files(package) / "migrations"
    return sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)


async def _applied(conn: Connection, service: str) -> dict[str, str] | None:
    """version → checksum of the service's applied migrations; None without a ledger."""
    if await conn.fetchval("SELECT to_regclass($1)", _LEDGER) is None:
        return None
    return {
        r["version"]: r["checksum"]
        for r in await conn.fetch(
            f"SELECT version, checksum FROM {_LEDGER} WHERE service = $1", service
        )
    }


async def collation(conn: Connection) -> str:
    """The connected database's collation (`C` compares text byte-wise: docs/startup.md)."""
    name: str = await conn.fetchval(
        "SELECT datcollate FROM pg_database WHERE datname = current_database()"
    )
    return name


async def migrate(conn: Connection, service: str, package: str) -> list[str]:
    """Apply the service's pending migrations, each in its own transaction; return their names.

    MigrationsPending when some are pending and the connected role may not apply them."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        done = await _applied(conn, service)
        pending: list[tuple[Traversable, str, str]] = []
        for file in migration_files(package):
            sql = file.read_text(encoding="utf-8")
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            version = file.name.removesuffix(".sql")
            if done is not None and version in done:
                if done[version] != checksum:
                    raise RuntimeError(
                        f"migration {service}/{file.name} changed after it was applied; "
                        "add a new numbered file instead"
                    )
                continue
            pending.append((file, sql, checksum))
        if pending and not await conn.fetchval(_MAY_MIGRATE):
            raise MigrationsPending(service, [f.name for f, _, _ in pending])
        if pending and done is None:
            await conn.execute(_CREATE_LEDGER)
        for file, sql, checksum in pending:
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    f"INSERT INTO {_LEDGER} (service, version, checksum) VALUES ($1, $2, $3)",
                    service,
                    file.name.removesuffix(".sql"),
                    checksum,
                )
            applied.append(file.name)
            log.info("migration_applied", service=service, migration=file.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied


@dataclass(frozen=True, slots=True)
class Migrations:
    """A service's numbered SQL files (`<package>.migrations`), declared once and used by
    its lifespan, its CLI and the tools that build a whole database; `after`: the sets
    its tables build on, applied first."""

    service: str
    package: str
    after: tuple["Migrations", ...] = ()

    def chain(self) -> list["Migrations"]:
        """This set and those it builds on, each once, prerequisites first."""
        ordered: list[Migrations] = []
        for prerequisite in self.after:
            ordered += [m for m in prerequisite.chain() if m not in ordered]
        return [*ordered, self]

    async def apply(self, conn: Connection) -> list[str]:
        """Apply what is pending of this set and its prerequisites; the files applied."""
        applied: list[str] = []
        for migrations in self.chain():
            applied += await migrate(conn, migrations.service, migrations.package)
        return applied


# The tables every service shares (the audit log).
SHARED = Migrations("tiendo", "tiendo")
