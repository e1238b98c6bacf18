"""A change of the tree re-plans each campaign apart (contract §7: a bad campaign can never
stop counting for the others): one stored unusable (a zone a newer tzdata dropped, a row
edited with SQL), or one whose re-plan raises, is left as it was and named in the audit
row, while the edit goes through for the others. Before, `PUT /v1/units` and a tree
version's load answered 500 for everyone as long as such a campaign was stored."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator import admin
from services.aggregator.app import create_app as create_aggregator
from tests.support.identities import ADMIN as AUTH
from tests.support.stack import Topics, aggregator_settings, running
from tests.support.world import TREE, build_world

START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5)
DEADLINE = START + timedelta(days=30)
NEW_WARD = {"code": "00013", "name": "Phường Hàng Bạc", "level": 3, "parent_code": "002"}
BAD_ZONE = "timezone: unknown time zone 'Asia/Hanoi_typo'"


async def _planned_for(conn: asyncpg.Connection, unit: str) -> set[str]:
    rows = await conn.fetch("SELECT DISTINCT campaign_id FROM progress WHERE unit = $1", unit)
    return {r["campaign_id"] for r in rows}


async def _last_audit(conn: asyncpg.Connection, action: str) -> dict[str, Any]:
    details = await conn.fetchval(
        "SELECT details FROM audit_log WHERE action = $1 ORDER BY id DESC LIMIT 1", action
    )
    document: dict[str, Any] = json.loads(details)
    return document


async def test_an_unusable_campaign_no_longer_fails_a_tree_change(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=START, days=30)
    conn = await asyncpg.connect(database)
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    try:
        await conn.execute(
            "INSERT INTO campaigns (id, name, starts_at, deadline, timezone, indicators)"
            " VALUES ('bad', 'typo', $1, $2, 'Asia/Hanoi_typo', '{cccd_collected}')",
            START,
            DEADLINE,
        )
        async with running(create_aggregator(settings)) as client:
            client.headers.update(AUTH)
            r = await client.put(
                "/v1/units",
                json=[
                    {
                        "code": "00007",
                        "name": "Phường Trúc Bạch (mới)",
                        "level": 3,
                        "parent_code": "001",
                    },
                    NEW_WARD,
                ],
            )
            assert r.status_code == 200, r.text
            # c1 is re-planned on the tree as changed (its new ward has its rows); the bad
            # one is left as it was, named in the audit row and by /readyz
            assert await _planned_for(conn, "00013") == {"c1"}
            audit = await _last_audit(conn, "units.upsert")
            assert audit["campaigns_not_replanned"] == {"bad": BAD_ZONE}
            ready = (await client.get("/readyz")).json()
            assert ready["campaigns_unusable"] == {"bad": BAD_ZONE}

            # a tree version (`cutover.after_tree_change`) alike
            day = (datetime.now(UTC) + timedelta(days=40)).date()
            tree = [
                u.model_dump(include={"code", "name", "type", "level", "parent_code"}) for u in TREE
            ]
            tree = [
                {**u, "name": "Phường Trúc Bạch (mới)"} if u["code"] == "00007" else u for u in tree
            ]
            r = await client.put(
                f"/v1/admin/tree-versions/{day.isoformat()}",
                json={"units": [*tree, {**NEW_WARD, "name": "Phường Hàng Bạc 2"}]},
            )
            assert r.status_code == 200, r.text
            assert r.json()["campaigns_not_replanned"] == {"bad": BAD_ZONE}
            audit = await _last_audit(conn, "units.version")
            assert audit["campaigns_not_replanned"] == {"bad": BAD_ZONE}
            assert await _planned_for(conn, "00013@" + day.isoformat()) == {"c1"}

            # fixed through the API: re-planned (and recounted) on the tree as it now is
            r = await client.put(
                "/v1/campaigns/bad",
                json={
                    "name": "fixed",
                    "starts_at": START.isoformat(),
                    "deadline": DEADLINE.isoformat(),
                    "indicators": ["cccd_collected"],
                },
            )
            assert r.status_code == 200, r.text
            assert await _planned_for(conn, "00013") == {"c1", "bad"}
            assert (await client.get("/readyz")).json()["campaigns_unusable"] == {}
    finally:
        await conn.close()


async def test_a_campaign_whose_replan_raises_is_left_alone_and_the_edit_goes_through(
    database: str, kafka: KafkaBroker, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    await build_world(database, starts_at=START, days=30)
    await build_world(database, starts_at=START, days=30, campaign_id="stuck")
    real = admin.replan

    async def replan(conn: asyncpg.Connection, campaign_id: str, **kw: Any) -> None:
        if campaign_id == "stuck":
            await real(conn, campaign_id, **kw)  # its writes are undone with it
            await conn.execute("SELECT 1 / 0")
        await real(conn, campaign_id, **kw)

    monkeypatch.setattr(admin, "replan", replan)
    conn = await asyncpg.connect(database)
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    try:
        async with running(create_aggregator(settings)) as client:
            client.headers.update(AUTH)
            r = await client.put("/v1/units", json=[NEW_WARD])
            assert r.status_code == 200, r.text
            assert await _planned_for(conn, "00013") == {"c1"}
            audit = await _last_audit(conn, "units.upsert")
            assert list(audit["campaigns_not_replanned"]) == ["stuck"]
            assert (await client.get("/v1/units/00013")).status_code == 200
    finally:
        await conn.close()
