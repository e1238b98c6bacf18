"""Named identities (issue 16): issued, rotated with overlap and revoked by the CLI and the
admin API, stored only as hashes, taken up by running services without a restart; the audit
log names the identity that made a change, whatever a header says."""

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from devtools.localstack import KafkaBroker, PostgresServer
from services.aggregator.app import create_app as create_aggregator
from services.notifier.app import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from tests.support.identities import ADMIN, bearer
from tests.support.stack import Topics, aggregator_settings, eventually, running
from tests.support.world import build_world

START = datetime.now(UTC) - timedelta(days=5)
FAST: dict[str, Any] = {"identity_refresh_seconds": 0.3, "identity_max_age_seconds": 10.0}


def tiendo(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIENDO_")}
    env["TIENDO_AGGREGATOR_DATABASE_URL"] = database
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "identity", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
async def aggregator(
    database: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    await build_world(database, starts_at=START)
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False, **FAST)
    async with running(create_aggregator(settings)) as client:
        yield client


async def audit_rows(database: str) -> list[tuple[str, str, str]]:
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch("SELECT actor, action, subject FROM audit_log ORDER BY id")
    finally:
        await conn.close()
    return [(r["actor"], r["action"], r["subject"]) for r in rows]


async def test_the_cli_issues_rotates_with_overlap_and_revokes_without_a_restart(
    aggregator: httpx.AsyncClient, database: str
) -> None:
    made = tiendo(database, "create", "chief-001", "--role", "reader", "--units", "001",
                  "--actor", "lan")  # fmt: skip
    assert made.returncode == 0, made.stderr
    first = made.stdout.strip()
    ward, city = "/v1/units/00004", "/v1/units/01"
    # issued seconds ago, used at once; a district chief reads its wards, not the city
    assert (await aggregator.get(ward, headers=bearer(first))).status_code == 200
    assert (await aggregator.get(city, headers=bearer(first))).status_code == 404

    rotated = tiendo(database, "rotate", "chief-001", "--grace", "30", "--actor", "lan")
    assert rotated.returncode == 0, rotated.stderr
    second = rotated.stdout.strip()

    async def both_work() -> None:
        for secret in (first, second):
            assert (await aggregator.get(ward, headers=bearer(secret))).status_code == 200

    await eventually(both_work, timeout=10)
    [listed] = [json.loads(line) for line in tiendo(database, "list", "--json").stdout.splitlines()
                if json.loads(line)["name"] == "chief-001"]  # fmt: skip
    assert (listed["state"], listed["role"], listed["units"]) == ("rotating", "reader", ["001"])

    assert tiendo(database, "revoke", "chief-001", "--actor", "lan").returncode == 0

    async def both_refused() -> None:
        for secret in (first, second):
            assert (await aggregator.get(ward, headers=bearer(secret))).status_code == 401

    await eventually(both_refused, timeout=10)
    conn = await asyncpg.connect(database)
    try:
        stored = str(await conn.fetch("SELECT * FROM auth.identities"))
    finally:
        await conn.close()
    assert first not in stored
    assert second not in stored
    assert [r for r in await audit_rows(database) if r[1].startswith("identity.")] == [
        ("lan", "identity.create", "chief-001"),
        ("lan", "identity.rotate", "chief-001"),
        ("lan", "identity.revoke", "chief-001"),
    ]


@pytest.mark.parametrize(
    ("args", "refusal"),
    [
        (["--role", "reader"], "a reader needs --units"),
        (["--role", "admin", "--units", "001"], "a admin sees every unit"),
        (["--role", "reader", "--units", "99999"], "unknown unit code(s): 99999"),
    ],
)
async def test_the_cli_refuses_a_scope_that_is_implied_wrong_or_unknown(
    aggregator: httpx.AsyncClient, database: str, args: list[str], refusal: str
) -> None:
    done = tiendo(database, "create", "someone", *args)
    assert done.returncode != 0
    assert refusal in done.stderr
    assert done.stdout == ""


async def test_the_admin_api_issues_for_every_service_and_the_audit_names_the_caller(
    aggregator: httpx.AsyncClient, database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    r = await aggregator.post(
        "/v1/identities",
        headers=ADMIN,
        json={"name": "chief-00010", "role": "reader", "units": ["00010"]},
    )
    assert r.status_code == 201, r.text
    reader = bearer(r.json()["secret"])
    settings = NotifierSettings(
        database_url=database,
        kafka_bootstrap=kafka.bootstrap,
        **topics.kwargs(),
        group_id=f"ntf-{topics.progress}",
        webhook_secret="test-webhook-secret",
        digest_times="",
        **FAST,
    )
    async with running(create_notifier(settings)) as notifier:
        assert (await notifier.get("/v1/alerts", headers=reader)).status_code == 200
        # a header cannot name someone else: the audit log has the identity
        r = await notifier.post(
            "/v1/silences",
            headers={**ADMIN, "X-Tiendo-Actor": "mallory"},
            json={"unit": "00010", "ends_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
        )
        assert r.status_code == 201, r.text
        assert r.json()["created_by"] == "test-admin"
        r = await aggregator.delete("/v1/identities/chief-00010", headers=ADMIN)
        assert r.status_code == 204, r.text

        async def refused() -> None:
            assert (await notifier.get("/v1/alerts", headers=reader)).status_code == 401

        await eventually(refused, timeout=10)
    r = await aggregator.put(
        "/v1/units",
        headers={**ADMIN, "X-Tiendo-Actor": "mallory"},
        json=[{"code": "00013", "name": "Phường Nguyễn Trung Trực", "level": 3,
               "parent_code": "001"}],
    )  # fmt: skip
    assert r.status_code == 200, r.text
    rows = await audit_rows(database)
    assert all(actor != "mallory" and "mallory" not in actor for actor, _, _ in rows)
    assert [r for r in rows if r[0] == "test-admin"] == [
        ("test-admin", "identity.create", "chief-00010"),
        ("test-admin", "silence.create", rows[-3][2]),
        ("test-admin", "identity.revoke", "chief-00010"),
        ("test-admin", "units.upsert", rows[-1][2]),
    ]
    listed = (await aggregator.get("/v1/identities", headers=ADMIN)).json()
    assert {i["name"]: i["state"] for i in listed}["chief-00010"] == "revoked"
    assert all("secret" not in i for i in listed)


async def test_identities_that_cannot_be_re_read_fail_closed_and_recover(
    database: str, kafka: KafkaBroker, topics: Topics, postgres: PostgresServer
) -> None:
    await build_world(database, starts_at=START)
    settings = aggregator_settings(
        database, kafka.bootstrap, topics, consume=False,
        identity_refresh_seconds=0.3, identity_max_age_seconds=1.5,
    )  # fmt: skip
    name = database.rsplit("/", 1)[1]
    owner = await asyncpg.connect(postgres.dsn())
    try:
        async with running(create_aggregator(settings)) as aggregator:
            assert (await aggregator.get("/v1/campaigns", headers=ADMIN)).status_code == 200
            # PostgreSQL refuses the service: a revocation could not be seen any more
            await owner.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await owner.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )

            # past the list's max age every guarded route answers 503, before its own query
            await asyncio.sleep(settings.identity_max_age_seconds + 0.5)
            for _ in range(3):
                r = await aggregator.get("/v1/campaigns", headers=ADMIN)
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"]
            assert (await aggregator.get("/healthz")).status_code == 200
            await owner.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

            async def reopened() -> None:
                try:
                    r = await aggregator.get("/v1/campaigns", headers=ADMIN)
                except (
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    asyncpg.InternalClientError,
                ) as exc:
                    # a pooled connection the outage broke
                    raise AssertionError(exc) from exc
                assert r.status_code == 200, r.text

            await eventually(reopened, timeout=20)
    finally:
        await owner.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await owner.close()
