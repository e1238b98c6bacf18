"""A chief's contacts name their unit as every path does (docs/units-over-time.md), with Hà
Nội's real 2023 and 2025 trees: an official code is its version in force now (`00004` from
1 July 2025 is Phường Ba Đình, `00004@2025-07-01`, not the retired ward Trúc Bạch that kept
the bare key), stored and answered as that key and name; a version's key names exactly that
version, whatever the moment; a code none of whose versions is in force now (a retired
ward, an abolished district) is refused, one item or the import's many, never stored on a
unit no alert will reach."""

from collections.abc import AsyncIterator
from datetime import datetime
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
from tests.support.stack import Topics, aggregator_settings, running
from tiendo.clock import ManualClock

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 11, 20, 9, tzinfo=TZ)
JUNE_2025 = datetime(2025, 6, 1, tzinfo=TZ)  # before the cut-over of 1 July 2025
BA_DINH = "00004@2025-07-01"  # Phường Ba Đình, the commune, from 1 July 2025
TRUC_BACH = "00004"  # Phường Trúc Bạch, the ward, until 30 June 2025
RETIRED_WARD = "00010"  # Nguyễn Trung Trực, gone on 1 January 2025
ABOLISHED_DISTRICT = "001"  # Quận Ba Đình, gone on 1 July 2025


def chief(address: str) -> dict[str, Any]:
    return {"chief_name": "Trưởng Công an", "contacts": [{"channel": "email", "address": address}]}


@pytest.fixture
async def hanoi(database: str, kafka: KafkaBroker, topics: Topics) -> str:
    """This test's database holding Hà Nội's trees."""
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    async with running(create_aggregator(settings)) as client:
        client.headers.update(ADMIN)
        await load_hanoi(client)
    return database


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
async def notifier(
    hanoi: str, kafka: KafkaBroker, topics: Topics, clock: ManualClock
) -> AsyncIterator[httpx.AsyncClient]:
    settings = NotifierSettings(
        database_url=hanoi,
        kafka_bootstrap=kafka.bootstrap,
        **topics.kwargs(),
        group_id=f"ntf-{topics.progress}",
        webhook_secret="test-webhook-secret",
        digest_times="",
        evaluate_every_seconds=3600,
        admin_watch_seconds=3600,
    )
    async with running(create_notifier(settings, clock=clock)) as client:
        client.headers.update(ADMIN)
        yield client


async def stored(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT unit, address FROM notifier.contacts ORDER BY unit")
    finally:
        await conn.close()
    return {r["unit"]: r["address"] for r in rows}


async def test_an_official_code_sets_the_chief_of_its_version_in_force_now(
    hanoi: str, notifier: httpx.AsyncClient, clock: ManualClock
) -> None:
    r = await notifier.put(f"/v1/contacts/{TRUC_BACH}", json=chief("badinh@test.invalid"))
    assert r.status_code == 200, r.text
    assert (r.json()["unit"], r.json()["unit_name"]) == (BA_DINH, "Phường Ba Đình")
    assert await stored(hanoi) == {BA_DINH: "badinh@test.invalid"}
    # read back by the code or the key alike
    for name in (TRUC_BACH, BA_DINH):
        r = await notifier.get(f"/v1/contacts/{name}")
        assert r.status_code == 200, r.text
        assert r.json()["unit"] == BA_DINH
        assert r.json()["contacts"][0]["address"] == "badinh@test.invalid"

    # before the cut-over the code meant the ward; a key means its version whenever
    clock.set(JUNE_2025)
    r = await notifier.put(f"/v1/contacts/{TRUC_BACH}", json=chief("trucbach@test.invalid"))
    assert r.status_code == 200, r.text
    assert (r.json()["unit"], r.json()["unit_name"]) == (TRUC_BACH, "Phường Trúc Bạch")
    r = await notifier.put(f"/v1/contacts/{BA_DINH}", json=chief("badinh.2@test.invalid"))
    assert r.status_code == 200, r.text
    assert r.json()["unit"] == BA_DINH
    assert await stored(hanoi) == {
        TRUC_BACH: "trucbach@test.invalid",
        BA_DINH: "badinh.2@test.invalid",
    }


async def test_a_code_with_no_version_in_force_sets_nothing(
    hanoi: str, notifier: httpx.AsyncClient
) -> None:
    for code in (RETIRED_WARD, ABOLISHED_DISTRICT):
        r = await notifier.put(f"/v1/contacts/{code}", json=chief("gone@test.invalid"))
        assert r.status_code == 422, r.text
        (problem,) = r.json()["errors"]
        assert problem["field"] == "unit"
        assert f"official code {code} names no unit in force" in problem["message"]
    r = await notifier.put("/v1/contacts/99999", json=chief("nobody@test.invalid"))
    assert r.status_code == 404, r.text
    assert await stored(hanoi) == {}


async def test_the_import_names_units_as_one_unit_does(
    hanoi: str, notifier: httpx.AsyncClient
) -> None:
    def item(unit: str, address: str) -> dict[str, Any]:
        return {"unit": unit, **chief(address)}

    # the code and the key are one unit now; a retired code and an unknown one none
    r = await notifier.put(
        "/v1/contacts",
        json=[
            item(TRUC_BACH, "a@test.invalid"),
            item(BA_DINH, "b@test.invalid"),
            item(RETIRED_WARD, "c@test.invalid"),
            item("99999", "d@test.invalid"),
            item("01", "e@test.invalid"),  # the city: one version, in force
        ],
    )
    assert r.status_code == 422, r.text
    problems = {p["index"]: p["message"] for p in r.json()["errors"]}
    assert sorted(problems) == [1, 2, 3]
    assert f"({BA_DINH}) repeats item 0" in problems[1]
    assert f"official code {RETIRED_WARD} names no unit in force" in problems[2]
    assert problems[3] == "no unit 99999"
    assert await stored(hanoi) == {}  # all or nothing

    r = await notifier.put("/v1/contacts", json=[item(TRUC_BACH, "a@test.invalid")])
    assert r.status_code == 200, r.text
    assert await stored(hanoi) == {BA_DINH: "a@test.invalid"}
