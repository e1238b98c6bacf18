"""Codes across a change of the tree, at ingest (docs/units-over-time.md "Events"): an event
is judged by what its code meant when it happened. A retired code that went whole is
accepted during its grace period; a split one is refused with its successors; a code
unknown at that moment is refused as unknown; token scopes follow the version."""

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator.tree_load import CrosswalkIn, TreeUnitIn, TreeVersionIn, load_tree_version
from tests.ingest.test_ingest_api import event, serving, settings_for
from tests.support.stack import Topics
from tests.support.world import build_world, issue_token
from tiendo.unit_keys import TREE_ZONE, cut_over

# The cut-over ten local days ago: events on both sides of it are within ingest's horizon.
DAY = datetime.now(TREE_ZONE).date() - timedelta(days=10)
GRACE_DAYS = 5
NEW = f"00004@{DAY.isoformat()}"

# The test world (01 → 001 → 00004, 00007; 01 → 002 → 00010) after its districts go:
# 00004 reuses its code for a larger ward, 00007 is split, 00010 goes whole into 00004.
TREE = TreeVersionIn(
    units=[
        TreeUnitIn(code="01", name="Thành phố Hà Nội", level=1),
        TreeUnitIn(code="00004", name="Phường Ba Đình", type="phường", level=2, parent_code="01"),
        TreeUnitIn(code="00020", name="Phường Ngọc Hà", type="phường", level=2, parent_code="01"),
    ],
    crosswalk=[
        CrosswalkIn(old_code="00004", new_code="00004", transfer="whole"),
        CrosswalkIn(old_code="00007", new_code="00004", transfer="part"),
        CrosswalkIn(old_code="00007", new_code="00020", transfer="part"),
        CrosswalkIn(old_code="00010", new_code="00004", transfer="whole"),
    ],
    grace_days=GRACE_DAYS,
)


def moment(day: date, days: int = 0, hours: int = 9) -> str:
    """RFC 3339 at `hours` local on `day` + `days`."""
    return (cut_over(day) + timedelta(days=days, hours=hours)).astimezone(UTC).isoformat()


@pytest.fixture
async def world(database: str) -> str:
    await build_world(database, starts_at=datetime.now(UTC) - timedelta(days=20))
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            await load_tree_version(conn, DAY, TREE, "test")
    finally:
        await conn.close()
    return database


@pytest.fixture
async def ingest(
    world: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    token = await issue_token(world, "upstream")
    async with serving(settings_for(world, kafka.bootstrap, topics), token) as client:
        yield client


async def send(client: httpx.AsyncClient, unit: str, at: str, i: str = "0") -> httpx.Response:
    return await client.post("/v1/events", json=event(f"{unit}-{i}", unit=unit, occurred_at=at))


async def test_a_retired_code_that_went_whole_is_accepted_within_its_grace_only(
    ingest: httpx.AsyncClient,
) -> None:
    assert (await send(ingest, "00010", moment(DAY, hours=0))).status_code == 202
    assert (await send(ingest, "00010", moment(DAY, GRACE_DAYS - 1, 23), "1")).status_code == 202
    late = await send(ingest, "00010", moment(DAY, GRACE_DAYS, 0), "2")
    assert late.status_code == 422
    assert late.json()["errors"] == [
        {"index": 0, "field": "unit", "message": "unknown unit code at occurred_at"}
    ]
    # before the cut-over it was a ward of its own: late reports of the old period count
    assert (await send(ingest, "00010", moment(DAY, -1, 23), "3")).status_code == 202


async def test_a_split_code_is_refused_naming_its_successors(ingest: httpx.AsyncClient) -> None:
    r = await send(ingest, "00007", moment(DAY, 1))
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    [error] = r.json()["errors"]
    assert error["field"] == "unit"
    assert f"split on {DAY.isoformat()}" in error["message"]
    assert error["successors"] == [
        {"key": NEW, "code": "00004", "name": "Phường Ba Đình"},
        {"key": "00020", "code": "00020", "name": "Phường Ngọc Hà"},
    ]
    # the same code, one minute before the cut-over, names the old ward
    assert (await send(ingest, "00007", moment(DAY, -1, 23), "1")).status_code == 202


async def test_codes_unknown_at_the_moment_are_refused_as_unknown(
    ingest: httpx.AsyncClient,
) -> None:
    never = await send(ingest, "99999", moment(DAY, 1))
    assert never.json()["errors"][0]["message"] == "unknown unit code"
    not_yet = await send(ingest, "00020", moment(DAY, -1, 23))
    assert (not_yet.status_code, not_yet.json()["errors"][0]["message"]) == (
        422,
        "unknown unit code at occurred_at",
    )
    assert (await send(ingest, "00020", moment(DAY, 0, 0), "1")).status_code == 202
    # a reused code is known on both sides: the old ward before, the new one after
    assert (await send(ingest, "00004", moment(DAY, -1, 23))).status_code == 202
    assert (await send(ingest, "00004", moment(DAY, 1), "1")).status_code == 202


async def test_token_scopes_follow_the_version_the_code_meant(
    world: str, kafka: KafkaBroker, topics: Topics
) -> None:
    district = await issue_token(world, "district-001", units=["001"])
    ward = await issue_token(world, "ward-00004", units=["00004"])
    hoan_kiem = await issue_token(world, "district-002", units=["002"])
    async with serving(settings_for(world, kafka.bootstrap, topics)) as client:

        async def status(token: str, unit: str, at: str, i: str) -> int:
            r = await client.post(
                "/v1/events",
                json=event(f"{token[-6:]}-{i}", unit=unit, occurred_at=at),
                headers={"Authorization": f"Bearer {token}"},
            )
            return r.status_code

        # district 001 held 00004 until the cut-over; after it, no district holds anything
        assert await status(district, "00004", moment(DAY, -1), "a") == 202
        assert await status(district, "00004", moment(DAY, 1), "b") == 403
        # a scope naming an official code follows the code to its new version, and to the
        # retired codes counted to it during their grace
        assert await status(ward, "00004", moment(DAY, 1), "c") == 202
        assert await status(ward, "00010", moment(DAY, 1), "d") == 202
        assert await status(hoan_kiem, "00010", moment(DAY, -1), "e") == 202
        assert await status(hoan_kiem, "00010", moment(DAY, 1), "f") == 403
