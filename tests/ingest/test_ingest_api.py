"""Ingest over HTTP against the real broker: 202 only after Kafka acks, precise 4xx.

The helpers here (`serving`, `event`, `batch`, `read_topic`) are shared by the other
tests/ingest/test_ingest_*.py files."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from devtools.localstack import KafkaBroker, free_port
from services.aggregator import admin
from services.aggregator.admin import UnitIn
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from tests.support.stack import Topics, eventually, running
from tests.support.world import build_world, issue_token
from tiendo.event import decode
from tiendo.events.v1 import events_pb2

NOW = datetime.now(UTC)
JSON = {"Content-Type": "application/json"}


# `i` is positional-only so that `event(**changes)` type-checks whatever the changes hold
def event(i: int | str = 0, /, **changes: object) -> dict[str, object]:
    return {
        "event_id": f"e-{i}",
        "unit": "00004",
        "indicator": "cccd_collected",
        "occurred_at": datetime.now(UTC).isoformat(),
        **changes,
    }


def batch(n: int, prefix: str = "e", **changes: object) -> dict[str, list[dict[str, object]]]:
    return {"events": [{**event(**changes), "event_id": f"{prefix}{i}"} for i in range(n)]}


def settings_for(database: str, bootstrap: str, topics: Topics, **overrides: Any) -> IngestSettings:
    return IngestSettings(
        database_url=database, kafka_bootstrap=bootstrap, **topics.kwargs(), **overrides
    )


@asynccontextmanager
async def serving(
    settings: IngestSettings, token: str | None = None, *, ready: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """The ingest app with its lifespan, a client calling it in-process, ready by default."""
    async with running(create_app(settings)) as client:
        if ready:

            async def is_ready() -> None:
                r = await client.get("/readyz")
                assert r.status_code == 200, r.text

            await eventually(is_ready)
        if token is not None:
            client.headers["Authorization"] = f"Bearer {token}"
        yield client


async def read_topic(
    bootstrap: str, topic: str, *, at_least: int = 0, idle_ms: int = 3000
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from the beginning: at least `at_least`, then until idle."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        while True:
            got = await consumer.getmany(timeout_ms=idle_ms)
            for part in got.values():
                records.extend(part)
            if not got and len(records) >= at_least:
                return records
    finally:
        await consumer.stop()


@pytest.fixture
async def ingest(
    database: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    await build_world(database, starts_at=NOW - timedelta(days=1))
    token = await issue_token(database, units=["001"], indicators=["cccd_collected"])
    async with serving(settings_for(database, kafka.bootstrap, topics), token) as client:
        yield client


async def test_accepted_events_are_in_kafka_keyed_by_unit_with_their_source(
    ingest: httpx.AsyncClient, kafka: KafkaBroker, topics: Topics
) -> None:
    response = await ingest.post("/v1/events", json=batch(3))
    assert response.status_code == 202
    assert response.json() == {"accepted": 3}
    records = await asyncio.wait_for(read_topic(kafka.bootstrap, topics.events, at_least=3), 120)
    assert {decode(r.value).event_id for r in records} == {"e0", "e1", "e2"}
    assert {r.key for r in records} == {b"00004"}
    assert {decode(r.value).source for r in records} == {"upstream"}


async def test_a_single_event_is_accepted_and_its_offset_kept(
    ingest: httpx.AsyncClient, kafka: KafkaBroker, topics: Topics
) -> None:
    r = await ingest.post("/v1/events", json=event(occurred_at="2026-01-01T08:00:00+07:00"))
    assert (r.status_code, r.json()) == (202, {"accepted": 1})
    [record] = await asyncio.wait_for(read_topic(kafka.bootstrap, topics.events, at_least=1), 120)
    assert decode(record.value).occurred_at.isoformat() == "2026-01-01T08:00:00+07:00"


async def test_protobuf_batch_is_accepted_like_json(
    ingest: httpx.AsyncClient, kafka: KafkaBroker, topics: Topics
) -> None:
    message = events_pb2.EventBatch()
    for i in range(2):
        e = message.events.add(
            event_id=f"pb-{i}", unit="00007", indicator="cccd_collected", value=2
        )
        e.occurred_at.FromDatetime(datetime.now(UTC))
        e.occurred_at_offset_seconds = 7 * 3600
    r = await ingest.post(
        "/v1/events",
        content=message.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert (r.status_code, r.json()) == (202, {"accepted": 2})
    records = await asyncio.wait_for(read_topic(kafka.bootstrap, topics.events, at_least=2), 120)
    decoded = sorted((decode(r.value) for r in records), key=lambda e: e.event_id)
    assert [(e.event_id, e.value, e.source) for e in decoded] == [
        ("pb-0", 2, "upstream"),
        ("pb-1", 2, "upstream"),
    ]
    assert decoded[0].occurred_at.utcoffset() == timedelta(hours=7)


async def test_protobuf_errors_are_the_json_errors(ingest: httpx.AsyncClient) -> None:
    message = events_pb2.EventBatch()
    e = message.events.add(event_id="pb-0", unit="00004", indicator="cccd_collected", value=0)
    e.occurred_at.FromDatetime(datetime.now(UTC))
    r = await ingest.post(
        "/v1/events",
        content=message.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    json_r = await ingest.post("/v1/events", json={"events": [event(value=0)]})
    assert r.status_code == json_r.status_code == 422
    assert r.json()["errors"] == json_r.json()["errors"]


async def test_missing_or_wrong_token_is_401(ingest: httpx.AsyncClient) -> None:
    del ingest.headers["Authorization"]
    r = await ingest.post("/v1/events", json=event())
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    for header in ("Bearer tdo_nope", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 300, "Bearer"):
        r = await ingest.post("/v1/events", json=event(), headers={"Authorization": header})
        assert r.status_code == 401, header


async def test_invalid_batch_is_422_listing_each_bad_event_and_nothing_is_published(
    ingest: httpx.AsyncClient, kafka: KafkaBroker, topics: Topics
) -> None:
    events = batch(3)["events"]
    events[1]["value"] = 0
    events[2]["subject"] = "012345678901"
    r = await ingest.post("/v1/events", json={"events": events})
    assert r.status_code == 422
    problem = r.json()
    assert problem["status"] == 422
    assert problem["type"].endswith("/invalid-event")
    assert [(e["index"], e["field"]) for e in problem["errors"]] == [(1, "value"), (2, "subject")]
    assert "012345678901" not in r.text
    assert await read_topic(kafka.bootstrap, topics.events, idle_ms=1000) == []


async def test_events_outside_the_token_scope_are_403_naming_each(
    ingest: httpx.AsyncClient, kafka: KafkaBroker, topics: Topics
) -> None:
    events = [
        event(0),
        event(1, unit="00010"),
        event(2, indicator="eid_activated_l2"),
        event(3, unit="002", indicator="eid_activated_l2"),
    ]
    r = await ingest.post("/v1/events", json={"events": events})
    assert r.status_code == 403
    problem = r.json()
    assert problem["type"].endswith("/out-of-scope")
    assert "unit 00010" in problem["detail"]
    assert "indicator eid_activated_l2" in problem["detail"]
    assert [(e["index"], e["field"], e["message"]) for e in problem["errors"]] == [
        (1, "unit", "unit 00010 is outside this token's scope"),
        (2, "indicator", "indicator eid_activated_l2 is outside this token's scope"),
        (3, "unit", "unit 002 is outside this token's scope"),
        (3, "indicator", "indicator eid_activated_l2 is outside this token's scope"),
    ]
    assert await read_topic(kafka.bootstrap, topics.events, idle_ms=1000) == []


async def test_a_token_may_write_anywhere_in_its_subtree(ingest: httpx.AsyncClient) -> None:
    r = await ingest.post(
        "/v1/events", json={"events": [event(0, unit="001"), event(1, unit="00007")]}
    )
    assert r.status_code == 202


async def test_a_unit_created_seconds_ago_is_found_on_first_use(
    ingest: httpx.AsyncClient, database: str
) -> None:
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            await admin.upsert_units(
                conn, [UnitIn(code="00013", name="Phường Mới", level=3, parent_code="001")], "test"
            )
    finally:
        await conn.close()
    r = await ingest.post("/v1/events", json=event(unit="00013"))
    assert r.status_code == 202, r.text


async def test_kafka_unreachable_is_503_with_retry_after_and_not_ready(
    database: str, topics: Topics
) -> None:
    await build_world(database, starts_at=NOW - timedelta(days=1))
    token = await issue_token(database)
    settings = settings_for(
        database, f"127.0.0.1:{free_port()}", topics, publish_timeout_seconds=1.0
    )
    async with serving(settings, token, ready=False) as client:

        async def catalog_loaded() -> None:
            r = await client.get("/readyz")
            assert r.status_code == 503
            body = r.json()
            assert body | {"loops": None} == {
                "status": "not ready",
                "kafka": False,
                "catalog": True,
                "loops": None,
            }
            assert {n: loop["state"] for n, loop in body["loops"].items()} == {
                "catalog": "running",
                "kafka": "running",
            }

        await eventually(catalog_loaded)
        # answered within the publish timeout (1 s), whatever the margin a busy machine needs
        r = await asyncio.wait_for(client.post("/v1/events", json=event()), 1.0 + 30)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    assert r.headers["content-type"] == "application/problem+json"


async def test_health_metrics_and_openapi(ingest: httpx.AsyncClient) -> None:
    assert (await ingest.get("/healthz")).json() == {"status": "ok"}
    await ingest.post("/v1/events", json=event())
    await ingest.post("/v1/events", json=event(value=0))
    metrics = (await ingest.get("/metrics")).text
    assert 'tiendo_ingest_events_accepted_total{indicator="cccd_collected"} 1.0' in metrics
    assert 'tiendo_ingest_events_rejected_total{reason="invalid"} 1.0' in metrics
    assert "tiendo_ingest_kafka_ready 1.0" in metrics
    assert "tiendo_ingest_tokens_fresh 1.0" in metrics
    schema = (await ingest.get("/openapi.json")).json()
    operation = schema["paths"]["/v1/events"]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/json",
        "application/x-protobuf",
    }
    assert {"202", "400", "401", "403", "413", "415", "422", "429", "503"} == set(
        operation["responses"]
    )
    assert schema["components"]["schemas"]["EventBatchIn"]["properties"]["events"]["maxItems"] == (
        1000
    )
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
