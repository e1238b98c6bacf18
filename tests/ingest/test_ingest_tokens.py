"""Tokens: issued, listed, rotated and revoked from the CLI while ingest runs (no restart),
stored hashed, every change audited; a revoked token is refused within
TIENDO_INGEST_TOKEN_REFRESH_SECONDS, and ingest fails closed when it cannot re-read them."""

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg
import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.cli import main
from tests.ingest.test_ingest_api import event, serving, settings_for
from tests.support.stack import Topics, eventually
from tests.support.world import build_world

REFRESH = 1.0
# A revoked token must be refused within one refresh; the margin is for a loaded machine.
REVOCATION_BOUND = REFRESH + 30.0


class Cli(Protocol):
    async def __call__(self, *argv: str) -> str: ...


@pytest.fixture
async def cli(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    """Run `tiendo …` as an operator would, against this test's database."""
    monkeypatch.setenv("TIENDO_INGEST_DATABASE_URL", database)

    async def run(*argv: str) -> str:
        capsys.readouterr()
        await asyncio.to_thread(main, list(argv))
        return capsys.readouterr().out

    return run


@pytest.fixture
async def ingest(
    database: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    await build_world(database, starts_at=datetime.now(UTC) - timedelta(days=1))
    settings = settings_for(database, kafka.bootstrap, topics, token_refresh_seconds=REFRESH)
    async with serving(settings) as client:
        yield client


async def post(client: httpx.AsyncClient, token: str, **changes: object) -> httpx.Response:
    return await client.post(
        "/v1/events", json=event(**changes), headers={"Authorization": f"Bearer {token}"}
    )


async def test_a_token_issued_from_the_cli_works_at_once_within_its_scope(
    ingest: httpx.AsyncClient, cli: Cli
) -> None:
    token = (
        await cli(
            "ingest",
            "token-create",
            "vneid-hanoi",
            "--units",
            "001",
            "--indicators",
            "cccd_collected",
            "--actor",
            "an.nguyen",
        )
    ).strip()
    assert token.startswith("tdo_")
    assert (await post(ingest, token)).status_code == 202
    r = await post(ingest, token, unit="00010")
    assert (r.status_code, r.json()["errors"][0]["field"]) == (403, "unit")
    r = await post(ingest, token, indicator="eid_activated_l2")
    assert (r.status_code, r.json()["errors"][0]["field"]) == (403, "indicator")


async def test_scope_must_be_explicit_and_name_known_codes(cli: Cli, database: str) -> None:
    await build_world(database, starts_at=datetime.now(UTC))
    with pytest.raises(SystemExit):
        await cli("ingest", "token-create", "no-scope")
    with pytest.raises(SystemExit, match="unknown unit code"):
        await cli("ingest", "token-create", "typo", "--units", "0O1", "--all-indicators")
    with pytest.raises(SystemExit, match="unknown indicator"):
        await cli("ingest", "token-create", "typo", "--all-units", "--indicators", "votes")
    with pytest.raises(SystemExit, match="raw ID number"):
        await cli("ingest", "token-create", "ward-079188000123", "--all-units", "--all-indicators")
    await cli("ingest", "token-create", "everything", "--all-units", "--all-indicators")
    with pytest.raises(SystemExit, match="already exists"):
        await cli("ingest", "token-create", "everything", "--all-units", "--all-indicators")


async def test_only_a_hash_is_stored_and_the_list_never_shows_a_secret(
    cli: Cli, database: str
) -> None:
    await build_world(database, starts_at=datetime.now(UTC))
    token = await cli("ingest", "token-create", "ward-form", "--all-units", "--all-indicators")
    token = token.strip()
    conn = await asyncpg.connect(database)
    try:
        stored = await conn.fetchval(
            "SELECT token_sha256 FROM ingest_tokens WHERE name = 'ward-form'"
        )
        dump = str(await conn.fetch("SELECT * FROM ingest_tokens"))
    finally:
        await conn.close()
    assert bytes(stored) == hashlib.sha256(token.encode()).digest()
    assert token not in dump
    listing = await cli("ingest", "token-list", "--json")
    [row] = [json.loads(line) for line in listing.splitlines()]
    assert row["name"] == "ward-form"
    assert row["state"] == "active"
    assert row["units"] == row["indicators"] == "all"
    assert row["fingerprint"] == hashlib.sha256(token.encode()).hexdigest()[:12]
    assert token not in listing
    assert bytes(stored).hex() not in listing
    text = await cli("ingest", "token-list")
    assert text.startswith("ward-form\tactive\t")


async def test_a_revoked_token_is_refused_within_the_refresh_period_without_restart(
    ingest: httpx.AsyncClient, cli: Cli
) -> None:
    token = await cli("ingest", "token-create", "cccd", "--all-units", "--all-indicators")
    token = token.strip()
    assert (await post(ingest, token)).status_code == 202
    await cli("ingest", "token-revoke", "cccd")

    async def refused() -> None:
        assert (await post(ingest, token)).status_code == 401

    await eventually(refused, timeout=REVOCATION_BOUND)
    with pytest.raises(SystemExit, match="no active token"):
        await cli("ingest", "token-revoke", "cccd")
    listing = await cli("ingest", "token-list", "--json")
    assert json.loads(listing)["state"] == "revoked"


async def test_rotation_replaces_the_secret_and_the_old_one_dies_after_its_grace(
    ingest: httpx.AsyncClient, cli: Cli
) -> None:
    old = await cli("ingest", "token-create", "registry", "--all-units", "--all-indicators")
    old = old.strip()
    assert (await post(ingest, old)).status_code == 202

    overlap = (await cli("ingest", "token-rotate", "registry", "--grace", "3600")).strip()
    assert overlap != old
    assert (await post(ingest, overlap)).status_code == 202  # a new secret works on first use
    assert (await post(ingest, old)).status_code == 202  # and the old one during its grace
    assert json.loads(await cli("ingest", "token-list", "--json"))["state"] == "rotating"

    new = (await cli("ingest", "token-rotate", "registry")).strip()
    assert (await post(ingest, new)).status_code == 202

    async def old_ones_refused() -> None:
        assert (await post(ingest, old)).status_code == 401
        assert (await post(ingest, overlap)).status_code == 401

    await eventually(old_ones_refused, timeout=REVOCATION_BOUND)
    assert json.loads(await cli("ingest", "token-list", "--json"))["state"] == "active"


async def test_every_token_change_is_audited_with_who_and_what(cli: Cli, database: str) -> None:
    await build_world(database, starts_at=datetime.now(UTC))
    token = await cli(
        "ingest", "token-create", "cccd", "--units", "001", "--all-indicators", "--actor", "lan"
    )
    await cli("ingest", "token-rotate", "cccd", "--grace", "60", "--actor", "minh")
    await cli("ingest", "token-revoke", "cccd", "--actor", "hoa")
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch(
            "SELECT actor, action, subject, details, at FROM audit_log"
            " WHERE action LIKE 'ingest.%' ORDER BY id"
        )
    finally:
        await conn.close()
    assert [(r["actor"], r["action"], r["subject"]) for r in rows] == [
        ("lan", "ingest.token.create", "cccd"),
        ("minh", "ingest.token.rotate", "cccd"),
        ("hoa", "ingest.token.revoke", "cccd"),
    ]
    assert json.loads(rows[0]["details"]) == {"units": ["001"], "indicators": "all"}
    assert json.loads(rows[1]["details"]) == {"grace": 60.0}
    assert all(r["at"] is not None for r in rows)
    assert token.strip() not in str(rows)


async def test_ingest_fails_closed_when_tokens_cannot_be_reread(
    database: str, kafka: KafkaBroker, topics: Topics, cli: Cli
) -> None:
    """PostgreSQL unreachable for longer than token_max_age_seconds: every request gets
    503 (a revoked token must not live on), and all is well again once it is back."""
    await build_world(database, starts_at=datetime.now(UTC) - timedelta(days=1))
    token = (await cli("ingest", "token-create", "t", "--all-units", "--all-indicators")).strip()
    name = database.rsplit("/", 1)[1]
    settings = settings_for(
        database, kafka.bootstrap, topics, token_refresh_seconds=0.5, token_max_age_seconds=2.0
    )
    admin = await asyncpg.connect(database.rsplit("/", 1)[0] + "/postgres")
    try:
        async with serving(settings, token) as client:
            assert (await client.post("/v1/events", json=event())).status_code == 202
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )

            async def closed() -> None:
                r = await client.post("/v1/events", json=event(1))
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "5"
                assert (await client.get("/readyz")).json()["catalog"] is False

            await eventually(closed, timeout=60)
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

            async def open_again() -> None:
                assert (await client.post("/v1/events", json=event(2))).status_code == 202

            await eventually(open_again, timeout=60)
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
