"""Idempotency that keeps data (issue 16), on the real broker and database: repeats inside
a request are accepted once or reported as conflicts while the rest is accepted; a later
delivery of a stored event_id with other content is dead-lettered as a `conflict` (the
first stays counted); and the sender sees what became of each event through
`GET /v1/events/{event_id}`, within its token's scope only."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.ingest import repository as ingest_sql
from tests.counting.test_event_path import START, Pipeline, increments, pipeline, until_value
from tests.house.test_schemas import allowed, as_role
from tests.ingest.test_ingest_api import read_topic, serving, settings_for
from tests.support.stack import Topics, eventually
from tests.support.world import build_world, issue_token

__all__ = ["pipeline"]  # the fixture, shared with tests/counting/test_event_path.py

AT = (datetime.now(UTC) - timedelta(hours=1)).isoformat()


def one(event_id: str, unit: str = "00004", value: int = 1) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "unit": unit,
        "indicator": "cccd_collected",
        "value": value,
        "occurred_at": AT,
    }


async def receipt(ingest: httpx.AsyncClient, event_id: str, status: str) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        r = await ingest.get(f"/v1/events/{event_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert body["status"] == status, body
        return body

    return await eventually(check)


async def test_a_merged_retry_keeps_every_good_event(pipeline: Pipeline) -> None:
    ingest, aggregator = pipeline
    good = increments("00004", 997, "merged")
    # two retries merged (a repeat of events[0]), and one id sent with two contents
    body = {"events": [*good, good[0], one("twice", value=1), one("twice", value=3)]}
    r = await ingest.post("/v1/events", json=body)
    assert r.status_code == 202, r.text
    assert r.json() == {
        "accepted": 997,
        "duplicates": [{"index": 997, "duplicate_of": 0}],
        "conflicts": [
            {"index": 998, "conflicts_with": 999},
            {"index": 999, "conflicts_with": 998},
        ],
    }
    await until_value(aggregator, "00004", 997)
    assert (await ingest.get("/v1/events/twice")).status_code == 404  # never published


async def test_a_later_delivery_with_other_content_is_a_conflict_and_the_first_stays(
    pipeline: Pipeline, database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    ingest, aggregator = pipeline
    for body in ([one("first")], [one("again")], [one("first", value=5)], [one("again")]):
        r = await ingest.post("/v1/events", json={"events": body})
        assert (r.status_code, r.json()) == (202, {"accepted": 1})
    # the same content later is a duplicate, other content a conflict: neither counts again
    again = await receipt(ingest, "again", "duplicate")
    assert again["duplicates"] == 1
    first = await receipt(ingest, "first", "conflict")
    assert (first["conflicts"], first["reason"]) == (1, "conflict")
    assert first["applied_at"] is not None
    await until_value(aggregator, "00004", 2)
    conn = await asyncpg.connect(database)
    try:
        letters = await conn.fetch("SELECT event_id, reason, unit, indicator FROM dead_letters")
    finally:
        await conn.close()
    assert [tuple(r) for r in letters] == [("first", "conflict", "00004", "cccd_collected")]
    [record] = await read_topic(kafka.bootstrap, topics.dead_letters, at_least=1)
    assert dict(record.headers)["reason"] == b"conflict"


async def test_a_token_sees_only_its_own_events_and_nothing_else_exists_for_it(
    pipeline: Pipeline, database: str
) -> None:
    ingest, aggregator = pipeline
    r = await ingest.post("/v1/events", json={"events": [one("ward-4"), one("ward-10", "00010")]})
    assert r.status_code == 202
    await until_value(aggregator, "01", 2)
    assert (await receipt(ingest, "ward-10", "counted"))["duplicates"] == 0
    district = await issue_token(database, "district-001", units=["001"])
    other_indicator = await issue_token(database, "eid-only", indicators=["eid_activated_l2"])
    as_district = {"Authorization": f"Bearer {district}"}
    r = await ingest.get("/v1/events/ward-4", headers=as_district)
    assert (r.status_code, r.json()["status"]) == (200, "counted")
    outside = await ingest.get("/v1/events/ward-10", headers=as_district)
    unknown = await ingest.get("/v1/events/never-sent", headers=as_district)
    assert outside.status_code == unknown.status_code == 404
    assert outside.json()["detail"] == unknown.json()["detail"]  # no existence leak
    r = await ingest.get(
        "/v1/events/ward-4", headers={"Authorization": f"Bearer {other_indicator}"}
    )
    assert r.status_code == 404
    assert (await ingest.get("/v1/events/ward-4", headers={"Authorization": ""})).status_code == 401
    r = await ingest.get("/v1/events/evt-001203004567")
    assert r.status_code == 404
    assert "001203004567" not in r.text


@pytest.fixture
async def ingest_alone(
    database: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    await build_world(database, starts_at=START)
    token = await issue_token(database)
    async with serving(settings_for(database, kafka.bootstrap, topics), token) as client:
        yield client


async def test_an_event_not_yet_stored_is_accepted_for_the_replica_that_took_it(
    ingest_alone: httpx.AsyncClient,
) -> None:
    r = await ingest_alone.post("/v1/events", json=one("fresh"))
    assert r.status_code == 202
    assert (await receipt(ingest_alone, "fresh", "accepted"))["applied_at"] is None


async def test_ingest_reads_the_receipts_through_views_and_nothing_of_the_events(
    database: str,
) -> None:
    await build_world(database, starts_at=START)
    conn = await asyncpg.connect(as_role(database, "tiendo_ingest"))
    try:
        assert await ingest_sql.stored_event(conn, "none") is None
        assert await ingest_sql.dead_letters_of(conn, "none") == []
        assert (
            await allowed(
                conn,
                "SELECT payload FROM aggregator.dead_letters",
                "SELECT subject FROM aggregator.events",
                "SELECT count(*) FROM aggregator_read.events",
            )
            == []
        )
    finally:
        await conn.close()


async def test_an_id_that_cannot_be_an_event_id_is_not_found_never_a_5xx(
    ingest_alone: httpx.AsyncClient,
) -> None:
    # PostgreSQL refuses a NUL in text: looked up, it was a 503 with Retry-After, telling
    # the sender to retry a request that can never succeed
    for path in ("/v1/events/a%00b", "/v1/events/%00", "/v1/events/%F0%9F%98%80"):
        r = await ingest_alone.get(path)
        assert r.status_code == 404, (path, r.text)
        assert "retry-after" not in r.headers
    assert (await ingest_alone.get("/v1/events/" + "x" * 65)).status_code == 404
    # an id at the limit is looked up (and answered 404 as never sent)
    assert (await ingest_alone.get("/v1/events/" + "x" * 64)).status_code == 404
