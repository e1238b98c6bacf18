"""The read API's unit paths take a version's key as well as an official code
(docs/units-over-time.md, "Reading by official code"), with Hà Nội's real 2023 and 2025
trees: `00004` is read on the tree of the moment asked about (Phường Trúc Bạch until 30
June 2025, Phường Ba Đình from 1 July), `00004@2025-07-01` names Phường Ba Đình whatever
the moment, and a key nobody loaded is no unit (404), like an unknown code."""

from collections.abc import AsyncIterator
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.cli import import_file, import_tree_version
from tests.support.identities import ADMIN_SECRET as ADMIN
from tests.support.identities import READER, bearer
from tests.support.stack import Topics, aggregator_settings, running

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DATA = Path(str(resources.files("devtools.demo") / "data"))
START = datetime(2025, 6, 20, tzinfo=TZ)
DEADLINE = datetime(2025, 7, 20, tzinfo=TZ)
BEFORE = datetime(2025, 6, 28, tzinfo=TZ)
AFTER = datetime(2025, 7, 10, tzinfo=TZ)
BA_DINH = "00004@2025-07-01"


async def load_hanoi(client: httpx.AsyncClient) -> None:
    """Hà Nội's trees of 2023, 1 January and 1 July 2025 with their crosswalks, through
    the admin API of an aggregator `client` (with an admin's credential)."""
    assert await import_file(client, "units", DATA / "hanoi_units.csv", None, ADMIN) == []
    for day, units, crosswalk in (
        (date(2025, 1, 1), "hanoi_units_2025-01.csv", "hanoi_crosswalk_2025-01_inferred.csv"),
        (date(2025, 7, 1), "hanoi_units_2025.csv", "hanoi_crosswalk_2025.csv"),
    ):
        problems = await import_tree_version(client, DATA / units, DATA / crosswalk, day, 90, ADMIN)
        assert problems == []


@pytest.fixture
async def aggregator(
    database: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    """The aggregator on Hà Nội's trees, with a campaign across the July 2025 cut-over
    targeting Trúc Bạch (00004, read at its start)."""
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    async with running(create_aggregator(settings)) as client:
        client.headers.update(bearer(ADMIN))
        await load_hanoi(client)
        r = await client.put(
            "/v1/campaigns/span",
            json={
                "name": "across July 2025",
                "starts_at": START.isoformat(),
                "deadline": DEADLINE.isoformat(),
                "indicators": ["cccd_collected"],
            },
        )
        assert r.status_code == 200, r.text
        r = await client.put(
            "/v1/campaigns/span/targets",
            json=[{"unit": "00004", "indicator": "cccd_collected", "target": 400}],
        )
        assert r.status_code == 200, r.text
        client.headers.update(READER)
        yield client


async def test_a_unit_is_read_by_its_key_or_by_its_official_code_now(
    aggregator: httpx.AsyncClient,
) -> None:
    by_key = await aggregator.get(f"/v1/units/{BA_DINH}")
    assert by_key.status_code == 200, by_key.text
    assert (by_key.json()["code"], by_key.json()["name"]) == (BA_DINH, "Phường Ba Đình")
    # the official code is read on today's tree: the same version
    by_code = (await aggregator.get("/v1/units/00004")).json()
    assert by_code == by_key.json()
    # the first version of 00004 is keyed `00004`, which today's tree reads as the official
    # code (Ba Đình); a retired code no version of which is in force reads as its key
    retired = (await aggregator.get("/v1/units/00010")).json()
    assert (retired["code"], retired["name"]) == ("00010", "Phường Nguyễn Trung Trực")


async def test_a_key_names_its_version_at_any_moment_of_a_campaign(
    aggregator: httpx.AsyncClient,
) -> None:
    # the official code is read on the tree the campaign reports on at the moment asked
    before = await aggregator.get(
        "/v1/campaigns/span/progress/00004", params={"as_of": BEFORE.isoformat()}
    )
    assert before.status_code == 200, before.text
    assert before.json()["unit"]["code"] == "00004"
    assert before.json()["indicators"][0]["target"] == 400
    after = await aggregator.get(
        "/v1/campaigns/span/progress/00004", params={"as_of": AFTER.isoformat()}
    )
    assert after.json()["unit"]["code"] == BA_DINH
    # the key reads the same version on the same tree
    by_key = await aggregator.get(
        f"/v1/campaigns/span/progress/{BA_DINH}", params={"as_of": AFTER.isoformat()}
    )
    assert by_key.status_code == 200, by_key.text
    assert by_key.json() == after.json()
    # and is not re-read at a moment before its version existed: it stays Ba Đình
    early = await aggregator.get(
        f"/v1/campaigns/span/progress/{BA_DINH}", params={"as_of": BEFORE.isoformat()}
    )
    assert early.status_code == 200, early.text
    assert early.json()["unit"]["code"] == BA_DINH


async def test_an_unknown_key_is_no_unit_and_a_malformed_one_is_refused(
    aggregator: httpx.AsyncClient,
) -> None:
    # (one test: each loads the three trees)
    for path in (
        "/v1/units/00004@2031-01-01",
        "/v1/units/99999",
        "/v1/campaigns/span/progress/00004@2031-01-01",
        "/v1/campaigns/span/progress/99999",
    ):
        r = await aggregator.get(path)
        assert r.status_code == 404, (path, r.text)
    for name in ("00004@", "00004@2025-7-1", "@2025-07-01", "00004@x"):
        r = await aggregator.get(f"/v1/units/{name}")
        assert r.status_code == 422, (name, r.text)
        assert r.json()["errors"][0]["field"] == "code"
        r = await aggregator.get(f"/v1/campaigns/span/progress/{name}")
        assert r.status_code == 422, (name, r.text)
        assert r.json()["errors"][0]["field"] == "unit"
