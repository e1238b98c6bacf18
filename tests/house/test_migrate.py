"""The database owner migrates (`tiendo migrate`, or a service logged in as the owner); a
service logged in as its own role only checks that its migrations are applied, starts when
they are, and stops with one clear error line when they are not (docs/startup.md)."""

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from devtools.localstack import PostgresServer, free_port
from services import aggregator, ingest, notifier
from tests.house.test_startup import _finish, _lines_at, _run
from tiendo.database import MigrationsPending

SETS = {
    "ingest": ingest.MIGRATIONS,
    "aggregator": aggregator.MIGRATIONS,
    "notifier": notifier.MIGRATIONS,
}
PENDING = "migrations pending: run `tiendo migrate` as the database owner"


def as_role(dsn: str, role: str) -> str:
    return dsn.replace("://tiendo@", f"://{role}@", 1)


async def tiendo_migrate(dsn: str) -> "subprocess.CompletedProcess[str]":
    """`tiendo migrate` as an operator runs it, with only the owner's DSN set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIENDO_")}
    env["TIENDO_MIGRATE_DATABASE_URL"] = dsn
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
async def empty_database(postgres: PostgresServer, template_db: str) -> AsyncIterator[str]:
    """A database with no migration applied (the roles exist: the template made them, and
    they are the server's)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres.dsn())
    await admin.execute(f'CREATE DATABASE "{name}"')
    yield postgres.dsn(name)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def test_a_role_finding_no_ledger_refuses_to_migrate(empty_database: str) -> None:
    conn = await asyncpg.connect(as_role(empty_database, "tiendo_notifier"))
    try:
        with pytest.raises(MigrationsPending, match="run `tiendo migrate`"):
            await notifier.MIGRATIONS.apply(conn)
        # nothing was created on the way: the owner's first migration finds a clean slate
        assert await conn.fetchval("SELECT to_regclass('public.schema_migrations')") is None
    finally:
        await conn.close()


async def test_tiendo_migrate_lets_every_role_start_on_a_new_database(
    empty_database: str,
) -> None:
    done = await tiendo_migrate(empty_database)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "migration_applied" in done.stderr  # logs go to stderr
    assert "database_collation_not_c" not in done.stderr  # our clusters are initdb'd with C
    for service, migrations in SETS.items():
        conn = await asyncpg.connect(as_role(empty_database, f"tiendo_{service}"))
        try:
            assert await migrations.apply(conn) == []  # all applied: the check passes
        finally:
            await conn.close()


async def test_a_role_connected_service_with_pending_migrations_stops_with_one_clear_line(
    database: str,
) -> None:
    owner = await asyncpg.connect(database)
    try:
        # as if this deployment's notifier had been upgraded but nobody had migrated yet
        await owner.execute(
            "DELETE FROM schema_migrations WHERE service = 'notifier' AND version = '006_contacts'"
        )
    finally:
        await owner.close()
    settings = {
        "database_url": as_role(database, "tiendo_notifier"),
        "kafka_bootstrap": f"127.0.0.1:{free_port()}",
        "port": str(free_port()),
        # a secret of its own, so the start check (no default secrets) lets it get this far
        "webhook_secret": "migrate-test-webhook-secret",
    }
    code, output = await _finish(_run("notifier", settings), timeout=60)
    # one line that says what to do, at once (no wait for Kafka), no traceback, no warning
    assert (code, _lines_at(output, "warning"), "Traceback" in output) == (1, [], False), output
    [error] = _lines_at(output, "error")
    assert all(text in error for text in ("startup_failed", PENDING, "006_contacts.sql"))


async def test_tiendo_migrate_warns_of_a_database_that_compares_text_through_a_locale(
    postgres: PostgresServer, template_db: str
) -> None:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres.dsn())
    await admin.execute(
        f"CREATE DATABASE \"{name}\" TEMPLATE template0 LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"
    )
    try:
        done = await tiendo_migrate(postgres.dsn(name))
        # it still migrates: a warning, not a refusal
        assert done.returncode == 0, done.stdout + done.stderr
        [warning] = [line for line in done.stderr.splitlines() if "database_collation" in line]
        assert "collation=C.UTF-8" in warning, warning
        assert "LC_COLLATE 'C'" in warning, warning
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
