"""Each service owns its tables in its own schema; what another service reads is a view it
may only read (issue 12). Each test logs in as the service's own role."""

import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from devtools.localstack import KafkaBroker, PostgresServer
from services.aggregator import admin
from services.aggregator.admin import UnitIn
from services.aggregator.app import create_app as create_aggregator
from services.ingest import repository as ingest_sql
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.notifier.repository import reference as notifier_reference
from services.schema import MIGRATIONS, migrate_all
from tests.counting.test_event_path import increments, post, until_value
from tests.support.identities import READER
from tests.support.stack import Topics, aggregator_settings, running, until_ready
from tests.support.world import build_world, issue_token
from tiendo.board import repository as board
from tiendo.database import Migrations, migrate, migration_files

STARTS = datetime(2026, 3, 1, tzinfo=UTC)
# the first file of each service that is not in a deployment from before the schemas
FIRST_NEW = {"tiendo": "002", "ingest": "003", "aggregator": "007", "notifier": "005"}


def every_set() -> list[Migrations]:
    """Every set of migrations once, in the order a whole database is built."""
    ordered: list[Migrations] = []
    for migrations in MIGRATIONS:
        ordered += [m for m in migrations.chain() if m not in ordered]
    return ordered


def as_role(dsn: str, role: str) -> str:
    return dsn.replace("://tiendo@", f"://{role}@", 1)


@pytest.fixture
async def world(database: str) -> str:
    await build_world(database, starts_at=STARTS)
    return database


async def _connect(dsn: str, role: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(as_role(dsn, role))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def ingest(world: str) -> AsyncIterator[asyncpg.Connection]:
    async for conn in _connect(world, "tiendo_ingest"):
        yield conn


@pytest.fixture
async def aggregator(world: str) -> AsyncIterator[asyncpg.Connection]:
    async for conn in _connect(world, "tiendo_aggregator"):
        yield conn


@pytest.fixture
async def notifier(world: str) -> AsyncIterator[asyncpg.Connection]:
    async for conn in _connect(world, "tiendo_notifier"):
        yield conn


async def allowed(conn: asyncpg.Connection, *statements: str) -> list[str]:
    """Those of `statements` the connection's role may run (each rolled back)."""
    out: list[str] = []
    for sql in statements:
        with contextlib.suppress(_RolledBack, asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute(sql)
                out.append(sql)
                raise _RolledBack
    return out


class _RolledBack(Exception):
    pass


async def test_each_service_owns_its_tables_in_its_own_schema(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch(
            "SELECT schemaname, tablename FROM pg_tables"
            " WHERE schemaname IN ('public', 'ingest', 'aggregator', 'notifier')"
        )
    finally:
        await conn.close()
    tables: dict[str, set[str]] = {}
    for r in rows:
        tables.setdefault(r["schemaname"], set()).add(r["tablename"])
    assert tables["public"] == {"schema_migrations", "audit_log"}
    assert tables["ingest"] == {"ingest_tokens", "rate_buckets"}
    assert {"units", "campaigns", "targets", "events", "progress"} <= tables["aggregator"]
    assert {"alerts", "notifications", "silences", "contacts", "chiefs"} <= tables["notifier"]


@pytest.mark.parametrize("service", ["ingest", "aggregator", "notifier"])
async def test_each_role_logs_in_to_its_own_schema_and_sees_the_ledger(
    world: str, service: str
) -> None:
    async for conn in _connect(world, f"tiendo_{service}"):
        path = await conn.fetchval("SHOW search_path")
        assert path.split(", ")[:2] == ["public", service]
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") > 0


async def test_ingest_reads_the_tree_through_views_and_writes_only_its_tokens(
    ingest: asyncpg.Connection,
) -> None:
    units = await ingest_sql.load_units(ingest)
    assert units["00004"] == ("01", "001")
    assert "cccd_collected" in await ingest_sql.load_indicators(ingest)
    await ingest_sql.insert_token(ingest, "upstream", b"\x01" * 32, [], [])
    assert await ingest_sql.token_exists(ingest, "upstream")
    assert (
        await allowed(
            ingest,
            "INSERT INTO units (code, name, level) VALUES ('9', 'x', 1)",
            "SELECT count(*) FROM aggregator.units",
            "SELECT count(*) FROM aggregator_read.progress",
            "SELECT count(*) FROM notifier.alerts",
        )
        == []
    )


async def test_notifier_reads_the_board_through_views_and_writes_only_its_own(
    notifier: asyncpg.Connection,
) -> None:
    campaigns = await board.campaigns(notifier)
    assert set(campaigns) == {"c1"}
    assert {c.unit for c in await board.targeted(notifier, "c1")} >= {"00004", "001", "01"}
    found = await board.values_as_of(
        notifier, "c1", "cccd_collected", ["01"], STARTS, datetime.now(UTC)
    )
    assert found["01"].value == 0
    assert await notifier_reference.campaign_names(notifier)
    await notifier_reference.save_policy(notifier, "c1", {"language": "en"}, "test")
    assert await notifier_reference.policy(notifier, "c1") == {"language": "en"}
    assert await notifier.fetchval(notifier_reference.SELECT_REFERENCE_VERSION) > 0
    assert (
        await allowed(
            notifier,
            "UPDATE progress SET value = 0",
            "DELETE FROM units",
            "SELECT count(*) FROM aggregator.events",
            "SELECT count(*) FROM ingest.ingest_tokens",
        )
        == []
    )


async def test_aggregator_writes_its_tables_and_reads_no_other_service(
    aggregator: asyncpg.Connection,
) -> None:
    async with aggregator.transaction():
        await admin.upsert_units(aggregator, [UnitIn(code="02", name="Hải Phòng", level=1)], "t")
    assert await aggregator.fetchval("SELECT name FROM units WHERE code = '02'") == "Hải Phòng"
    own = ["DELETE FROM events", "UPDATE progress SET value = 0", "DELETE FROM dead_letters"]
    assert await allowed(aggregator, *own) == own
    assert (
        await allowed(
            aggregator,
            "SELECT count(*) FROM notifier.alerts",
            "SELECT count(*) FROM notifier.contacts",
            "DELETE FROM notifier.contacts",
            "SELECT count(*) FROM ingest.ingest_tokens",
            "SELECT count(*) FROM audit_log",
        )
        == []
    )


async def test_a_deployment_from_before_the_schemas_upgrades_in_place_with_its_data(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The migrations such a deployment had applied: a package of each service's old files.
    for service, package in ((m.service, m.package) for m in every_set()):
        folder = tmp_path / f"old_{service}" / "migrations"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").touch()
        for f in migration_files(package):
            if f.name < FIRST_NEW[service]:
                shutil.copy(str(f), folder / f.name)
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin_conn = await asyncpg.connect(postgres.dsn())
    await admin_conn.execute(f'CREATE DATABASE "{name}"')
    dsn = postgres.dsn(name)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            for service in (m.service for m in every_set()):
                await migrate(conn, service, f"old_{service}")
            await conn.execute(
                "INSERT INTO units (code, name, level, chief_name, chief_email, chief_chat)"
                " VALUES ('01', 'Hà Nội', 1, 'Chief', 'chief@test.invalid', 'json://x/y')"
            )
            await conn.execute(
                "INSERT INTO alert_policies (campaign_id, config) VALUES ('c1', '{}')"
            )
        finally:
            await conn.close()
        token = await issue_token(dsn)
        assert token
        conn = await asyncpg.connect(dsn)
        try:
            await migrate_all(conn)
            assert await conn.fetchval("SELECT name FROM aggregator.units") == "Hà Nội"
            assert await conn.fetchval("SELECT count(*) FROM notifier.alert_policies") == 1
            assert await conn.fetchval("SELECT count(*) FROM ingest.ingest_tokens") == 1
            contacts = await conn.fetch(
                "SELECT unit, channel, address FROM notifier.contacts ORDER BY channel"
            )
            assert [tuple(r) for r in contacts] == [
                ("01", "chat", "json://x/y"),
                ("01", "email", "chief@test.invalid"),
            ]
            assert await conn.fetchval("SELECT name FROM notifier.chiefs") == "Chief"
            assert not await conn.fetchval(
                "SELECT count(*) FROM pg_attribute WHERE attrelid = 'aggregator.units'::regclass"
                " AND attname LIKE 'chief%' AND NOT attisdropped"
            )
        finally:
            await conn.close()
    finally:
        await admin_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_conn.close()


async def test_the_units_import_hands_contacts_over_to_the_notifier(
    aggregator: asyncpg.Connection, notifier: asyncpg.Connection
) -> None:
    ward = UnitIn(
        code="00004",
        name="Phường Phúc Xá",
        level=3,
        parent_code="001",
        chief_name="Chief Phúc Xá",
        chief_email="chief@test.invalid",
        chief_phone="+84900000000",
    )
    async with aggregator.transaction():
        await admin.upsert_units(aggregator, [ward], "t")
    recipient = await notifier_reference.unit(notifier, "00004")
    assert recipient is not None
    assert recipient.chief_name == "Chief Phúc Xá"
    assert {(c.channel, c.address) for c in recipient.contacts} == {
        ("email", "chief@test.invalid"),
        ("sms", "+84900000000"),
    }
    # a blank contact column removes that contact
    async with aggregator.transaction():
        await admin.upsert_units(aggregator, [ward.model_copy(update={"chief_email": None})], "t")
    recipient = await notifier_reference.unit(notifier, "00004")
    assert recipient is not None
    assert [c.channel for c in recipient.contacts] == ["sms"]


async def test_ingest_and_the_aggregator_logged_in_as_their_roles_count_events(
    world: str, kafka: KafkaBroker, topics: Topics
) -> None:
    token = await issue_token(world)
    ingest_app = create_ingest(
        IngestSettings(
            database_url=as_role(world, "tiendo_ingest"),
            kafka_bootstrap=kafka.bootstrap,
            **topics.kwargs(),
        )
    )
    aggregator_app = create_aggregator(
        aggregator_settings(as_role(world, "tiendo_aggregator"), kafka.bootstrap, topics)
    )
    async with running(ingest_app) as ingest, running(aggregator_app) as aggregator:
        ingest.headers["Authorization"] = f"Bearer {token}"
        aggregator.headers.update(READER)
        await until_ready(ingest)
        await post(ingest, increments("00004", 5, "role", at=STARTS + timedelta(days=1)))
        await until_value(aggregator, "01", 5)
