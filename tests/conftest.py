"""Real Kafka and PostgreSQL for the suite: one broker and one server per test session on
free ports in temporary folders; each test gets its own database and its own topics."""

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from devtools.localstack import KafkaBroker, PostgresServer, free_port
from services.schema import migrate_all
from tests.support.databases import clone_database
from tests.support.identities import seed_identities
from tests.support.stack import Topics

# fixtures of the notifier's receivers (SMTP, HTTP) and harness; `make hunt`'s examples
pytest_plugins = ["tests.support.notifier", "tests.support.hunt"]


@pytest.fixture(scope="session")
def stack_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: pytest deletes all but its three newest base folders, which
    # would pull the data folder from under a server of another session running meanwhile.
    path = Path(tempfile.mkdtemp(prefix="tiendo-stack-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(stack_dir: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(stack_dir / "pg", free_port(), fast=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka(stack_dir: Path) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(stack_dir / "kafka", free_port(), free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
async def template_db(postgres: PostgresServer) -> str:
    """A database with every migration applied, cloned for each test."""
    conn = await asyncpg.connect(postgres.dsn())
    await conn.execute("CREATE DATABASE tiendo_template")
    await conn.close()
    conn = await asyncpg.connect(postgres.dsn("tiendo_template"))
    await migrate_all(conn)
    await seed_identities(conn)
    await conn.close()
    return "tiendo_template"


@pytest.fixture
async def database(postgres: PostgresServer, template_db: str) -> AsyncIterator[str]:
    """The DSN of a fresh, migrated database of this test's own."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres.dsn())
    await clone_database(admin, template_db, name)
    yield postgres.dsn(name)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
def topics() -> Topics:
    return Topics.unique()


@pytest.fixture(scope="session", autouse=True)
def _quiet_env() -> None:
    # Settings come from arguments in tests, never from a developer's shell.
    for key in [k for k in os.environ if k.startswith("TIENDO_")]:
        del os.environ[key]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
