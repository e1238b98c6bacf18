"""The whole event path on the real broker and database: ingest → Kafka → aggregator →
PostgreSQL → progress API, with duplicates counted once and rollup up the tree."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from tests.support.identities import READER
from tests.support.stack import ServiceKwargs, Topics, eventually, running, until_ready
from tests.support.world import build_world, issue_token

START = datetime.now(UTC) - timedelta(days=10)
# ingest and the aggregator, both running on this test's database and topics
Pipeline = tuple[httpx.AsyncClient, httpx.AsyncClient]


def increments(
    unit: str, n: int, prefix: str, value: int = 1, at: datetime | None = None
) -> list[dict[str, object]]:
    when = (at or datetime.now(UTC) - timedelta(hours=1)).isoformat()
    return [
        {
            "event_id": f"{prefix}-{i}",
            "unit": unit,
            "indicator": "cccd_collected",
            "value": value,
            "occurred_at": when,
        }
        for i in range(n)
    ]


@pytest.fixture
async def pipeline(database: str, kafka: KafkaBroker, topics: Topics) -> AsyncIterator[Pipeline]:
    await build_world(database, starts_at=START)
    token = await issue_token(database)
    common: ServiceKwargs = {
        "database_url": database,
        "kafka_bootstrap": kafka.bootstrap,
        **topics.kwargs(),
    }
    ingest_app = create_ingest(IngestSettings(**common))
    aggregator_app = create_aggregator(
        AggregatorSettings(**common, group_id=f"agg-{topics.events}", metrics_refresh_seconds=0.5)
    )
    async with running(ingest_app) as ingest, running(aggregator_app) as aggregator:
        ingest.headers["Authorization"] = f"Bearer {token}"
        aggregator.headers.update(READER)

        await until_ready(ingest)
        yield ingest, aggregator


async def post(ingest: httpx.AsyncClient, events: list[dict[str, object]]) -> None:
    for i in range(0, len(events), 1000):
        r = await ingest.post("/v1/events", json={"events": events[i : i + 1000]})
        assert r.status_code == 202, r.text


async def value_of(aggregator: httpx.AsyncClient, unit: str) -> dict[str, Any]:
    r = await aggregator.get(f"/v1/campaigns/c1/progress/{unit}")
    assert r.status_code == 200, r.text
    figures: dict[str, Any] = r.json()["indicators"][0]
    return figures


async def until_value(aggregator: httpx.AsyncClient, unit: str, expected: int) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        figures = await value_of(aggregator, unit)
        assert figures["value"] == expected
        return figures

    return await eventually(check)


async def test_posted_events_are_counted_exactly_and_rolled_up(pipeline: Pipeline) -> None:
    ingest, aggregator = pipeline
    await post(
        ingest,
        increments("00004", 120, "a")
        + increments("00007", 30, "b", value=3)
        + increments("00010", 7, "c")
        + increments("001", 2, "d"),
    )
    await until_value(aggregator, "01", 120 + 90 + 7 + 2)
    ward = await value_of(aggregator, "00004")
    assert ward["value"] == 120
    assert ward["target"] == 1000
    assert ward["pct"] == pytest.approx(12.0)
    district = await value_of(aggregator, "001")
    assert district["value"] == 120 + 90 + 2
    assert district["target"] == 2000
    assert district["children_total"] == 2
    city = await value_of(aggregator, "01")
    assert city["target"] == 3000
    # 10 of 50 days: the plan expects a fifth of the target
    assert city["expected"] == pytest.approx(600, rel=0.01)
    assert city["pace"] == pytest.approx(219 / city["expected"])
    assert city["status"] == "behind"


async def test_duplicates_are_counted_once(pipeline: Pipeline) -> None:
    ingest, aggregator = pipeline
    batch = increments("00004", 50, "dup")
    await post(ingest, batch)
    await post(ingest, batch)  # a client retry of the whole batch
    await post(ingest, batch[10:20])  # and of a part of it
    await post(ingest, increments("00004", 1, "sentinel"))
    await until_value(aggregator, "00004", 51)
    metrics = (await aggregator.get("/metrics")).text
    assert "tiendo_aggregator_duplicates_skipped_total 60.0" in metrics


async def test_negative_corrections_and_snapshots(pipeline: Pipeline) -> None:
    ingest, aggregator = pipeline
    hour = datetime.now(UTC) - timedelta(hours=5)
    await post(ingest, increments("00004", 10, "inc", at=hour))
    await post(ingest, increments("00004", 1, "fix", value=-2, at=hour + timedelta(minutes=1)))
    await until_value(aggregator, "00004", 8)
    # the ward reports its own total: it replaces what was counted before that moment
    snapshot = {
        "event_id": "snap-1",
        "unit": "00004",
        "indicator": "cccd_collected",
        "kind": "snapshot",
        "value": 100,
        "occurred_at": (hour + timedelta(hours=1)).isoformat(),
    }
    await post(ingest, [snapshot])
    await until_value(aggregator, "00004", 100)
    await post(ingest, increments("00004", 5, "after", at=hour + timedelta(hours=2)))
    await until_value(aggregator, "00004", 105)
    # an increment older than the snapshot is already inside the snapshot's total
    await post(ingest, increments("00004", 3, "late", at=hour + timedelta(minutes=30)))
    await post(ingest, increments("00007", 1, "sentinel"))
    await until_value(aggregator, "00007", 1)
    assert (await value_of(aggregator, "00004"))["value"] == 105
    assert (await value_of(aggregator, "01"))["value"] == 106


async def test_events_outside_the_campaign_window_are_stored_but_not_counted(
    pipeline: Pipeline,
) -> None:
    ingest, aggregator = pipeline
    await post(ingest, increments("00004", 4, "before", at=START - timedelta(days=1)))
    await post(ingest, increments("00004", 2, "inside"))
    await until_value(aggregator, "00004", 2)


async def test_as_of_answers_from_history(pipeline: Pipeline) -> None:
    ingest, aggregator = pipeline
    t1 = START + timedelta(days=2)
    await post(ingest, increments("00004", 5, "day2", at=t1))
    await post(ingest, increments("00004", 7, "day5", at=START + timedelta(days=5)))
    await until_value(aggregator, "00004", 12)
    r = await aggregator.get(
        "/v1/campaigns/c1/progress/01", params={"as_of": (t1 + timedelta(hours=1)).isoformat()}
    )
    assert r.status_code == 200
    assert r.json()["indicators"][0]["value"] == 5


async def test_unit_and_campaign_reads(pipeline: Pipeline) -> None:
    _, aggregator = pipeline
    unit = (await aggregator.get("/v1/units/00004")).json()
    assert [a["code"] for a in unit["ancestors"]] == ["01", "001"]
    assert (await aggregator.get("/v1/units/001")).json()["children"][0]["code"] == "00004"
    r = await aggregator.get("/v1/units/99999")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert (await aggregator.get("/v1/campaigns/c1")).json()["indicators"] == ["cccd_collected"]
    assert (await aggregator.get("/v1/campaigns/nope/progress/01")).status_code == 404


async def test_per_unit_metrics_stop_at_the_configured_level(pipeline: Pipeline) -> None:
    ingest, aggregator = pipeline
    await post(ingest, increments("00004", 3, "m"))
    await until_value(aggregator, "00004", 3)

    async def exported() -> str:
        text = (await aggregator.get("/metrics")).text
        assert (
            'tiendo_unit_value{campaign="c1",indicator="cccd_collected",level="2",unit="001"} 3.0'
            in text
        )
        return text

    text = await eventually(exported)
    assert 'unit="00004"' not in text


async def test_a_citizen_counts_once_and_a_late_earlier_event_moves_the_count(
    pipeline: Pipeline,
) -> None:
    ingest, aggregator = pipeline
    citizen = "ab" * 32
    base = datetime.now(UTC) - timedelta(hours=6)

    def subject_event(event_id: str, unit: str, hours: int) -> dict[str, object]:
        return {
            "event_id": event_id,
            "unit": unit,
            "indicator": "cccd_collected",
            "subject": citizen,
            "occurred_at": (base + timedelta(hours=hours)).isoformat(),
        }

    await post(ingest, [subject_event("s-late", "00004", 3)])
    await until_value(aggregator, "00004", 1)
    await post(ingest, [subject_event("s-later", "00007", 4)])  # the same citizen again
    await post(ingest, [subject_event("s-early", "00010", 1)])  # earlier, arriving last
    await until_value(aggregator, "00010", 1)
    assert (await value_of(aggregator, "00004"))["value"] == 0
    assert (await value_of(aggregator, "00007"))["value"] == 0
    assert (await value_of(aggregator, "01"))["value"] == 1
    # both orders of the same two events in one batch give the same result
    other = "cd" * 32
    await post(
        ingest,
        [
            {**subject_event("t-2", "00004", 2), "subject": other},
            {**subject_event("t-1", "00007", 1), "subject": other},
        ],
    )
    await until_value(aggregator, "00007", 1)
    assert (await value_of(aggregator, "01"))["value"] == 2


async def test_leaderboard_ranks_by_pct_then_pace_then_code_and_exports(pipeline: Pipeline) -> None:
    import csv
    import io

    from openpyxl import load_workbook
    from openpyxl.worksheet.worksheet import Worksheet

    ingest, aggregator = pipeline
    await post(
        ingest,
        increments("00004", 1, "lb-a", value=300)
        + increments("00007", 1, "lb-b", value=100)
        + increments("00010", 1, "lb-c", value=300),
    )
    await until_value(aggregator, "01", 700)
    r = await aggregator.get(
        "/v1/campaigns/c1/leaderboard", params={"level": 3, "indicator": "cccd_collected"}
    )
    assert r.status_code == 200, r.text
    board = r.json()
    assert board["total"] == 3
    # 00004 and 00010 tie on pct and pace: the code breaks the tie
    assert [(row["rank"], row["unit"]["code"]) for row in board["rows"]] == [
        (1, "00004"),
        (2, "00010"),
        (3, "00007"),
    ]
    assert board["rows"][0]["pct"] == pytest.approx(30.0)
    page = (
        await aggregator.get(
            "/v1/campaigns/c1/leaderboard",
            params={"level": 3, "indicator": "cccd_collected", "limit": 1, "offset": 2},
        )
    ).json()
    assert [row["unit"]["code"] for row in page["rows"]] == ["00007"]
    districts = (
        await aggregator.get(
            "/v1/campaigns/c1/leaderboard", params={"level": 2, "indicator": "cccd_collected"}
        )
    ).json()["rows"]
    assert [(d["unit"]["code"], d["children_total"]) for d in districts] == [("002", 1), ("001", 2)]

    exported = await aggregator.get(
        "/v1/campaigns/c1/leaderboard",
        params={"level": 3, "indicator": "cccd_collected", "format": "csv"},
    )
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert [(row["rank"], row["code"], row["value"]) for row in rows] == [
        ("1", "00004", "300"),
        ("2", "00010", "300"),
        ("3", "00007", "100"),
    ]
    xlsx = await aggregator.get(
        "/v1/campaigns/c1/leaderboard",
        params={"level": 3, "indicator": "cccd_collected", "format": "xlsx"},
    )
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert isinstance(sheet, Worksheet)  # narrows the type: a workbook may open on a chart
    assert [sheet.cell(row=i, column=2).value for i in (3, 4, 5)] == ["00004", "00010", "00007"]

    bad = await aggregator.get(
        "/v1/campaigns/c1/leaderboard", params={"level": 3, "indicator": "pid_verified"}
    )
    assert bad.status_code == 422
