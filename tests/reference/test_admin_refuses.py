"""The admin API refuses, whole and naming what is wrong, what it used to store: a unit
tree whose parent chain loops, numbers of the wrong JSON type, unknown fields, a target
listed twice (contract §7: reference data is validated before it is stored)."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.cli import import_file
from services.aggregator.settings import AggregatorSettings
from tests.support.identities import ADMIN_SECRET as ADMIN
from tests.support.identities import bearer
from tests.support.stack import Topics, running
from tests.support.world import build_world

START = datetime.now(UTC) - timedelta(days=5)
INVALID = "https://tiendo.example/problems/invalid-parameters"
REFUSED = "https://tiendo.example/problems/invalid-reference-data"


@pytest.fixture
async def client(
    database: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    await build_world(database, starts_at=START)
    settings = AggregatorSettings(
        database_url=database,
        kafka_bootstrap=kafka.bootstrap,
        group_id=f"agg-{topics.events}",
        consume=False,
        **topics.kwargs(),
    )
    async with running(create_aggregator(settings)) as c:
        c.headers.update(bearer(ADMIN))
        yield c


def campaign(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "c",
        "starts_at": START.isoformat(),
        "deadline": (START + timedelta(days=30)).isoformat(),
        "indicators": ["cccd_collected"],
    }
    return body | changes


async def level_two(client: httpx.AsyncClient) -> list[tuple[str, int]]:
    r = await client.get(
        "/v1/campaigns/c1/leaderboard", params={"level": 2, "indicator": "cccd_collected"}
    )
    assert r.status_code == 200, r.text
    return sorted((row["unit"]["code"], row["target"]) for row in r.json()["rows"])


async def test_a_parent_chain_that_loops_is_refused_and_nothing_changes(
    client: httpx.AsyncClient, database: str, tmp_path: Path
) -> None:
    before = await level_two(client)
    # 00004 is a ward of 001: 001 under it closes a loop the ancestors' refresh never saw
    r = await client.put(
        "/v1/units",
        json=[{"code": "001", "name": "Quận Ba Đình", "level": 2, "parent_code": "00004"}],
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == REFUSED
    [error] = r.json()["errors"]
    assert (error["index"], error["field"]) == (0, "parent_code")
    assert "001" in error["message"]
    assert "00004" in error["message"]
    assert "loops" in error["message"]

    unit = (await client.get("/v1/units/001")).json()
    assert unit["parent"] == "01"
    assert [a["code"] for a in unit["ancestors"]] == ["01"]
    assert await level_two(client) == before
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT parent_code FROM units WHERE code = '001'") == "01"
    finally:
        await conn.close()

    # the spreadsheet import, whose parent is not in the file, is refused by the server
    sheet = tmp_path / "units.csv"
    sheet.write_text("code,name,level,parent_code\n001,Quận Ba Đình,2,00004\n", "utf-8")
    problems = await import_file(client, "units", sheet, None, ADMIN)
    assert problems[-1] == "nothing was imported"
    assert any("loops" in p for p in problems), problems
    assert (await client.get("/v1/units/001")).json()["parent"] == "01"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/campaigns/c1/targets", [{"unit": "00004", "target": True}], "0.target"),
        ("/v1/campaigns/c1/targets", [{"unit": "00004", "target": "500"}], "0.target"),
        ("/v1/campaigns/c1/targets", [{"unit": "00004", "target": 500.0}], "0.target"),
        ("/v1/campaigns/c1/targets", [{"unit": "00004", "baseline": False}], "0.baseline"),
        ("/v1/campaigns/c1/targets", [{"unit": "00004", "junk": 1}], "0.junk"),
        ("/v1/campaigns/c1", campaign(behind_threshold=True), "behind_threshold"),
        ("/v1/campaigns/c1", campaign(behind_threshold="0.5"), "behind_threshold"),
        ("/v1/campaigns/c1", campaign(stale_after_seconds=3600.0), "stale_after_seconds"),
        ("/v1/campaigns/c1", campaign(stale_after_seconds="3600"), "stale_after_seconds"),
        (
            "/v1/campaigns/c1",
            campaign(milestones=[{"at": START.isoformat(), "fraction": "0.5"}]),
            "milestones.0.fraction",
        ),
        (
            "/v1/campaigns/c1",
            campaign(milestones=[{"at": START.isoformat(), "fraction": 0.5, "junk": 1}]),
            "milestones.0.junk",
        ),
        ("/v1/units", [{"code": "00098", "level": 3.0}], "0.level"),
        ("/v1/units", [{"code": "00098", "level": "3"}], "0.level"),
        ("/v1/units", [{"code": "00098", "level": True}], "0.level"),
    ],
)
async def test_numbers_must_be_json_numbers_and_fields_known(
    client: httpx.AsyncClient, database: str, path: str, body: Any, field: str
) -> None:
    if path.endswith("/targets"):
        body = [{"indicator": "cccd_collected", "target": 10} | row for row in body]
    elif path == "/v1/units":
        body = [{"name": "x", "parent_code": "001"} | row for row in body]
    r = await client.put(path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["type"] == INVALID
    assert field in [e["field"] for e in r.json()["errors"]], r.json()
    conn = await asyncpg.connect(database)
    try:
        target = "SELECT target FROM targets WHERE campaign_id = 'c1' AND unit = '00004'"
        assert await conn.fetchval(target) == 1000
        assert await conn.fetchval("SELECT count(*) FROM units WHERE code = '00098'") == 0
        assert await conn.fetchval("SELECT behind_threshold FROM campaigns") == 0.9
    finally:
        await conn.close()


async def test_the_strict_bodies_still_take_what_they_should(
    client: httpx.AsyncClient, database: str, tmp_path: Path
) -> None:
    # RFC 3339 text is a moment, and an integer a float
    r = await client.put(
        "/v1/campaigns/c1",
        json=campaign(
            behind_threshold=1,
            milestones=[{"at": (START + timedelta(days=10)).isoformat(), "fraction": 0}],
        ),
    )
    assert r.status_code == 200, r.text
    assert r.json()["behind_threshold"] == 1.0
    # a sheet's cells are text: the CLI reads "500" as the number it is
    sheet = tmp_path / "targets.csv"
    sheet.write_text("unit,indicator,target,baseline\n00004,cccd_collected,500,7\n", "utf-8")
    assert await import_file(client, "targets", sheet, "c1", ADMIN) == []
    units = tmp_path / "units.csv"
    units.write_text("code,name,level,parent_code\n00098,Phường mới,3,001\n", "utf-8")
    assert await import_file(client, "units", units, None, ADMIN) == []
    conn = await asyncpg.connect(database)
    try:
        row = await conn.fetchrow(
            "SELECT target, baseline FROM targets WHERE campaign_id = 'c1' AND unit = '00004'"
        )
        assert row is not None
        assert (row["target"], row["baseline"]) == (500, 7)
        assert await conn.fetchval("SELECT level FROM units WHERE code = '00098'") == 3
    finally:
        await conn.close()


async def test_a_target_listed_twice_is_refused(client: httpx.AsyncClient, database: str) -> None:
    r = await client.put(
        "/v1/campaigns/c1/targets",
        json=[
            {"unit": "00004", "indicator": "cccd_collected", "target": 10},
            {"unit": "00007", "indicator": "cccd_collected", "target": 15},
            {"unit": "00004", "indicator": "cccd_collected", "target": 20},
        ],
    )
    assert r.status_code == 422, r.text
    assert r.json()["type"] == REFUSED
    [error] = r.json()["errors"]
    assert (error["index"], error["field"]) == (2, "unit")
    assert "00004/cccd_collected" in error["message"]
    assert "[0]" in error["message"]
    conn = await asyncpg.connect(database)
    try:
        targets = await conn.fetch(
            "SELECT unit, target FROM targets WHERE campaign_id = 'c1' ORDER BY unit"
        )
        assert [t["target"] for t in targets if t["unit"] in ("00004", "00007")] == [1000, 1000]
    finally:
        await conn.close()


async def test_a_chiefs_address_is_held_to_the_notifiers_rule(
    client: httpx.AsyncClient, database: str
) -> None:
    """The units' chief columns are handed to the notifier's contacts: checked by the rule
    its own `PUT /v1/contacts` applies (`tiendo.addresses`), or a header-splitting email
    and a webhook no client can post to were stored, and failed at every send."""
    ward = {"code": "00004", "name": "Phường Trúc Bạch", "level": 3, "parent_code": "001"}
    bad = {
        "chief_email": "not an email\r\nBcc: x@evil.example",
        "chief_phone": "call me maybe",
        "chief_webhook": "http://hooks.example:abc/",
        "chief_chat": "nope",
    }
    r = await client.put("/v1/units", json=[ward | bad])
    assert r.status_code == 422, r.text
    assert {e["field"] for e in r.json()["errors"]} == {f"0.{column}" for column in bad}
    conn = await asyncpg.connect(database)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM notifier.contacts WHERE unit = '00004'")
    finally:
        await conn.close()
    assert stored == 0
    good = {
        "chief_email": "truong@congan.example",
        "chief_phone": "+84901234567",
        "chief_webhook": "https://hooks.example:8443/tiendo",
        "chief_chat": "json://chat.example/room",
    }
    r = await client.put("/v1/units", json=[ward | good])
    assert r.status_code == 200, r.text
