"""A silence names its unit by a version's key or by an official code (docs/alerts.md,
"Silences"), with Hà Nội's real 2023 and 2025 trees: an official code is the version in
force at the silence's start (`00004` from 1 July 2025 is Phường Ba Đình,
`00004@2025-07-01`), stored and answered as that key, and the silence mutes that version
and its subtree, as alerts and their ancestors name keys. A silence, or a policy, naming
what does not exist is refused (contract §8), never stored to mute nothing."""

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from services.notifier.app import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from tests.reference.test_version_keys_in_paths import load_hanoi
from tests.support.identities import ADMIN
from tests.support.stack import Topics, aggregator_settings, eventually, running
from tests.support.world import build_world
from tiendo.clock import ManualClock

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 11, 20, 9, tzinfo=TZ)
JUNE_2025 = datetime(2025, 6, 1, tzinfo=TZ)  # before the cut-over of 1 July 2025
BA_DINH = "00004@2025-07-01"  # Phường Ba Đình, the commune, from 1 July 2025
TRUC_BACH = "00004"  # Phường Trúc Bạch, the ward, until 30 June 2025
# The alerts the tests read are written by hand, under a campaign of their own.
GONE = "gone"


@pytest.fixture
async def notifier(
    database: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    settings = NotifierSettings(
        database_url=database,
        kafka_bootstrap=kafka.bootstrap,
        **topics.kwargs(),
        group_id=f"ntf-{topics.progress}",
        webhook_secret="test-webhook-secret",
        digest_times="",
        # one clock pass, at the start; none after an admin change (a silence): the
        # alerts the tests write by hand stand still while they are read
        evaluate_every_seconds=3600,
        admin_watch_seconds=3600,
    )
    async with running(create_notifier(settings, clock=ManualClock(NOW))) as client:
        client.headers.update(ADMIN)

        async def passed() -> None:
            loops = (await client.get("/readyz")).json()["loops"]
            assert loops["clock"]["last_heartbeat"] is not None

        await eventually(passed)
        yield client


@pytest.fixture
async def hanoi(database: str, kafka: KafkaBroker, topics: Topics) -> str:
    """This test's database holding Hà Nội's trees."""
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    async with running(create_aggregator(settings)) as client:
        client.headers.update(ADMIN)
        await load_hanoi(client)
    return database


@pytest.fixture
async def alerts(hanoi: str, notifier: httpx.AsyncClient) -> None:
    """An open alert on Trúc Bạch and one on Ba Đình."""
    conn = await asyncpg.connect(hanoi)
    try:
        await conn.executemany(
            "INSERT INTO notifier.alerts (campaign_id, unit, indicator, rule, state, since,"
            " fired_at, last_evaluated_at) VALUES ($1, $2, 'cccd_collected', 'behind',"
            " 'firing', $3, $3, $3)",
            [(GONE, TRUC_BACH, JUNE_2025), (GONE, BA_DINH, NOW - timedelta(days=1))],
        )
    finally:
        await conn.close()


async def _silence(notifier: httpx.AsyncClient, **matchers: Any) -> dict[str, Any]:
    r = await notifier.post(
        "/v1/silences", json={**matchers, "ends_at": (NOW + timedelta(days=2)).isoformat()}
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _silenced(notifier: httpx.AsyncClient) -> dict[str, list[int]]:
    """Each open alert's unit → the silences that mute it."""
    r = await notifier.get("/v1/alerts", params={"campaign": GONE})
    assert r.status_code == 200, r.text
    return {a["unit"]: a["silenced_by"] for a in r.json()}


@pytest.mark.usefixtures("alerts")
async def test_an_official_code_mutes_the_version_in_force_when_the_silence_starts(
    notifier: httpx.AsyncClient,
) -> None:
    # after the cut-over, 00004 is Phường Ba Đình: the silence says so, and mutes it
    now = await _silence(notifier, unit="00004")
    assert (now["unit"], now["unit_name"]) == (BA_DINH, "Phường Ba Đình")
    assert await _silenced(notifier) == {TRUC_BACH: [], BA_DINH: [now["id"]]}
    # a key is taken as it is
    by_key = await _silence(notifier, unit=BA_DINH)
    assert (by_key["unit"], by_key["unit_name"]) == (BA_DINH, "Phường Ba Đình")
    listed = (await notifier.get("/v1/silences")).json()
    assert [(s["id"], s["unit"], s["unit_name"]) for s in listed] == [
        (by_key["id"], BA_DINH, "Phường Ba Đình"),
        (now["id"], BA_DINH, "Phường Ba Đình"),
    ]
    assert await _silenced(notifier) == {TRUC_BACH: [], BA_DINH: [now["id"], by_key["id"]]}


@pytest.mark.usefixtures("alerts")
async def test_a_silence_starting_before_the_cut_over_reads_the_old_tree(
    notifier: httpx.AsyncClient,
) -> None:
    june = {"starts_at": JUNE_2025.isoformat()}
    ward = await _silence(notifier, unit="00004", **june)
    assert (ward["unit"], ward["unit_name"]) == (TRUC_BACH, "Phường Trúc Bạch")
    # a key names its version even before that version is in force
    commune = await _silence(notifier, unit=BA_DINH, **june)
    assert commune["unit"] == BA_DINH
    # the subtree is the version's: district Ba Đình (001) held Trúc Bạch, not the commune
    district = await _silence(notifier, unit="001", **june)
    assert district["unit"] == "001"
    assert await _silenced(notifier) == {
        TRUC_BACH: [ward["id"], district["id"]],
        BA_DINH: [commune["id"]],
    }
    # and the city's subtree holds both trees' units
    city = await _silence(notifier, unit="01")
    assert await _silenced(notifier) == {
        TRUC_BACH: [ward["id"], district["id"], city["id"]],
        BA_DINH: [commune["id"], city["id"]],
    }


@pytest.mark.usefixtures("hanoi")
async def test_a_unit_that_is_neither_a_key_nor_a_code_in_force_is_refused(
    notifier: httpx.AsyncClient,
) -> None:
    ends_at = (NOW + timedelta(days=1)).isoformat()
    for unit, starts_at in (
        ("00004@2031-01-01", NOW),  # no such version
        ("99999", NOW),  # no such code
        ("00004@2025-7-1", NOW),  # not a key's shape
    ):
        r = await notifier.post(
            "/v1/silences",
            json={"unit": unit, "starts_at": starts_at.isoformat(), "ends_at": ends_at},
        )
        assert r.status_code == 422, (unit, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["unit"], r.text
    assert (await notifier.get("/v1/silences")).json() == []


@pytest.fixture
async def world(database: str) -> str:
    """A small tree and campaign c1 counting cccd_collected."""
    await build_world(database, starts_at=NOW - timedelta(days=3))
    return database


async def test_a_silence_naming_an_unknown_campaign_or_indicator_is_refused_by_field(
    world: str, notifier: httpx.AsyncClient
) -> None:
    ends_at = (NOW + timedelta(days=1)).isoformat()
    for matchers, fields in (
        ({"campaign": "nope"}, ["campaign"]),
        ({"indicator": "nope"}, ["indicator"]),
        ({"rule": "nope"}, ["rule"]),
        (
            {"campaign": "nope", "unit": "99999", "indicator": "nope", "rule": "stale"},
            ["campaign", "unit", "indicator"],
        ),
        ({"campaign": "c1", "indicator": "eid_approved_x"}, ["indicator"]),
    ):
        r = await notifier.post("/v1/silences", json={**matchers, "ends_at": ends_at})
        assert r.status_code == 422, (matchers, r.text)
        assert [e["field"] for e in r.json()["errors"]] == fields, r.text
    assert (await notifier.get("/v1/silences")).json() == []
    # what exists is taken, and no campaign at all still means every campaign
    every = await _silence(
        notifier, campaign="c1", unit="00010", indicator="cccd_collected", rule="behind"
    )
    assert every["unit"] == "00010"
    assert (await _silence(notifier, rule="stale"))["campaign_id"] is None


async def test_a_policy_of_a_campaign_that_does_not_exist_is_not_found(
    world: str, notifier: httpx.AsyncClient, database: str
) -> None:
    alert_policy = {"group_wait_seconds": 600}
    explanation_policy = {"causes": [{"code": "staff", "vi": "Thiếu người", "en": "Staff"}]}
    for path, body in (
        ("/v1/campaigns/nope/alert-policy", alert_policy),
        ("/v1/campaigns/nope/explanation-policy", explanation_policy),
    ):
        r = await notifier.put(path, json=body)
        assert r.status_code == 404, (path, r.text)
        assert (await notifier.get(path)).status_code == 404
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM notifier.alert_policies") == 0
        assert await conn.fetchval("SELECT count(*) FROM notifier.explanation_policies") == 0
    finally:
        await conn.close()
    # the campaign that exists takes both
    for path, body in (
        ("/v1/campaigns/c1/alert-policy", alert_policy),
        ("/v1/campaigns/c1/explanation-policy", explanation_policy),
    ):
        r = await notifier.put(path, json=body)
        assert r.status_code == 200, (path, r.text)
        assert (await notifier.get(path)).status_code == 200
