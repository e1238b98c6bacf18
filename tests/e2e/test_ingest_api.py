"""Ingest over HTTP against the real broker: 202 only after Kafka acks, precise 4xx."""

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from tests.support.stack import Topics, eventually, running
from tests.support.world import build_world, issue_token
from tiendo.event import decode
from tiendo.localstack import KafkaBroker, free_port

NOW = datetime.now(UTC)


def body(n: int = 1, **changes: object) -> dict[str, object]:
    events = [
        {
            "event_id": f"e-{i}",
            "unit": "00004",
            "indicator": "cccd_collected",
            "occurred_at": NOW.isoformat(),
            **changes,
        }
        for i in range(n)
    ]
    return events[0] if n == 1 else {"events": events}


@pytest.fixture
async def ingest(database, kafka: KafkaBroker, topics: Topics):
    await build_world(database, starts_at=NOW - timedelta(days=1))
    token = await issue_token(database, units=["001"], indicators=["cccd_collected"])
    settings = IngestSettings(
        database_url=database, kafka_bootstrap=kafka.bootstrap, **topics.kwargs()
    )
    async with running(create_app(settings)) as client:

        async def ready():
            r = await client.get("/readyz")
            assert r.status_code == 200, r.text

        await eventually(ready)
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


async def test_accepted_events_are_in_kafka_keyed_by_unit(ingest, kafka, topics):
    response = await ingest.post("/v1/events", json=body(3))
    assert response.status_code == 202
    assert response.json() == {"accepted": 3}
    consumer = AIOKafkaConsumer(
        topics.events, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        records = []
        while len(records) < 3:
            for batch in (await consumer.getmany(timeout_ms=2000)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    assert {decode(r.value).event_id for r in records} == {"e-0", "e-1", "e-2"}
    assert {r.key for r in records} == {b"00004"}
    assert decode(records[0].value).source == "upstream"


async def test_missing_or_wrong_token_is_401(ingest):
    del ingest.headers["Authorization"]
    r = await ingest.post("/v1/events", json=body())
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await ingest.post("/v1/events", json=body(), headers={"Authorization": "Bearer tdo_nope"})
    assert r.status_code == 401


async def test_wrong_content_type_is_415(ingest):
    r = await ingest.post(
        "/v1/events",
        content=b"event_id=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415


async def test_malformed_json_is_400(ingest):
    r = await ingest.post(
        "/v1/events", content=b'{"event_id": ', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["title"] == "Bad Request"


async def test_body_over_one_mib_is_413(ingest):
    r = await ingest.post(
        "/v1/events", content=b" " * (1_048_576 + 1), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413


async def test_invalid_batch_is_422_listing_each_bad_event_and_nothing_is_published(ingest):
    events = body(3)["events"]
    events[1]["value"] = 0
    events[2]["subject"] = "012345678901"
    r = await ingest.post("/v1/events", json={"events": events})
    assert r.status_code == 422
    problem = r.json()
    assert problem["status"] == 422
    assert [(e["index"], e["field"]) for e in problem["errors"]] == [(1, "value"), (2, "subject")]
    assert "012345678901" not in r.text


async def test_event_outside_the_token_scope_is_403(ingest):
    r = await ingest.post("/v1/events", json=body(unit="00010"))
    assert r.status_code == 403
    assert "00010" in r.json()["detail"]
    r = await ingest.post("/v1/events", json=body(indicator="eid_activated_l2"))
    assert r.status_code == 403


async def test_kafka_unreachable_is_503_with_retry_after(database, topics):
    await build_world(database, starts_at=NOW - timedelta(days=1))
    token = await issue_token(database)
    settings = IngestSettings(
        database_url=database,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        publish_timeout_seconds=1.0,
        **topics.kwargs(),
    )
    async with running(create_app(settings)) as client:

        async def catalog_loaded():
            r = await client.get("/readyz")
            assert r.json()["catalog"] is True
            assert r.status_code == 503
            assert r.json()["kafka"] is False

        await eventually(catalog_loaded)
        r = await client.post(
            "/v1/events", json=body(), headers={"Authorization": f"Bearer {token}"}
        )
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"


async def test_health_metrics_and_openapi(ingest):
    assert (await ingest.get("/healthz")).json() == {"status": "ok"}
    await ingest.post("/v1/events", json=body())
    metrics = (await ingest.get("/metrics")).text
    assert 'tiendo_ingest_events_accepted_total{indicator="cccd_collected"} 1.0' in metrics
    schema = (await ingest.get("/openapi.json")).json()
    assert "EventBatchIn" in schema["components"]["schemas"]
    assert "/v1/events" in schema["paths"]
