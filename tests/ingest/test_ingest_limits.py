"""Every input limit is a setting, enforced with its status and described in the OpenAPI
schema: body size (413), batch size, lengths, value ranges, time window (422), and the
per-token rate (429 with Retry-After)."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from devtools.localstack import KafkaBroker
from tests.ingest.test_ingest_api import batch, event, serving, settings_for
from tests.support.stack import Topics, eventually
from tests.support.world import build_world, issue_token

TIGHT = {
    "max_body_bytes": 4096,
    "max_batch": 5,
    "max_event_id_length": 10,
    "max_increment": 100,
    "max_snapshot": 1000,
    "future_tolerance_seconds": 60,
    "past_horizon_days": 2,
    "rate_limit_events_per_second": 5.0,
    "rate_limit_burst_events": 10,
}
# ingest with the limits above, and two tokens
Tight = tuple[httpx.AsyncClient, list[str]]


@pytest.fixture
async def tight(database: str, kafka: KafkaBroker, topics: Topics) -> AsyncIterator[Tight]:
    await build_world(database, starts_at=datetime.now(UTC) - timedelta(days=1))
    tokens = [await issue_token(database, name) for name in ("a", "b")]
    settings = settings_for(database, kafka.bootstrap, topics, **TIGHT)
    async with serving(settings) as client:
        yield client, tokens


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_limits_from_the_settings_are_enforced_with_their_fields(tight: Tight) -> None:
    client, (token, _) = tight
    cases = [
        (batch(6), 422, (None, "events")),
        (event(event_id="x" * 11), 422, (0, "event_id")),
        (event(value=101), 422, (0, "value")),
        (event(kind="snapshot", value=1001), 422, (0, "value")),
        (event(occurred_at=(datetime.now(UTC) + timedelta(minutes=2)).isoformat()), 422, None),
        (event(occurred_at=(datetime.now(UTC) - timedelta(days=3)).isoformat()), 422, None),
    ]
    for body, status, error in cases:
        r = await client.post("/v1/events", json=body, headers=auth(token))
        assert r.status_code == status, (body, r.text)
        first = r.json()["errors"][0]
        assert (first["index"], first["field"]) == (error or (0, "occurred_at"))
    big = {"events": [event(i, comment="x" * 1000) for i in range(5)]}
    r = await client.post("/v1/events", json=big, headers=auth(token))
    assert r.status_code == 413
    assert r.json()["detail"] == "the body is larger than 4096 bytes"


async def test_a_body_without_content_length_is_cut_off_at_the_limit(tight: Tight) -> None:
    client, (token, _) = tight

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    r = await client.post(
        "/v1/events",
        content=chunks(),
        headers={**auth(token), "Content-Type": "application/json"},
    )
    assert r.status_code == 413


async def test_over_its_rate_a_token_gets_429_with_retry_after_and_others_do_not(
    tight: Tight,
) -> None:
    client, (token, other) = tight
    statuses = []
    # 5-event batches at 5 events/s with a burst of 10: a 429 comes after a few requests
    # however slow the machine (a request would have to take a second to avoid it).
    for i in range(100):
        r = await client.post("/v1/events", json=batch(5, f"r{i}-"), headers=auth(token))
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    assert statuses[0] == 202
    assert set(statuses) == {202, 429}
    assert r.headers["content-type"] == "application/problem+json"
    wait = int(r.headers["retry-after"])
    assert wait >= 1
    assert "5 events/s" in r.json()["detail"]
    r = await client.post("/v1/events", json=event("d"), headers=auth(other))
    assert r.status_code == 202
    metrics = (await client.get("/metrics")).text
    assert 'tiendo_ingest_rate_limited_requests_total{token="a"} 1.0' in metrics

    async def allowed_again() -> None:
        r = await client.post("/v1/events", json=event("c"), headers=auth(token))
        assert r.status_code == 202

    # The bucket refills at 5 events/s: the client is let in again after Retry-After.
    await eventually(allowed_again, timeout=wait + 30, every=0.5)


async def test_invalid_requests_count_against_the_rate_too(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=datetime.now(UTC) - timedelta(days=1))
    token = await issue_token(database)
    # one event per 1,000 s: nothing refills during the test
    settings = settings_for(
        database,
        kafka.bootstrap,
        topics,
        rate_limit_events_per_second=0.001,
        rate_limit_burst_events=10,
    )
    async with serving(settings, token) as client:
        statuses = [
            (await client.post("/v1/events", json=event(value=0))).status_code for _ in range(11)
        ]
    assert statuses == [422] * 10 + [429]


async def test_the_openapi_schema_states_the_configured_limits(tight: Tight) -> None:
    client, _ = tight
    schema = (await client.get("/openapi.json")).json()
    models = schema["components"]["schemas"]
    assert models["EventBatchIn"]["properties"]["events"]["maxItems"] == 5
    props = models["EventIn"]["properties"]
    assert props["event_id"]["maxLength"] == 10
    assert props["value"]["minimum"] == -100
    assert props["value"]["maximum"] == 1000
    assert props["unit"]["maxLength"] == 32
    operation = schema["paths"]["/v1/events"]["post"]
    assert "4096 bytes" in operation["responses"]["413"]["description"]
    assert operation["responses"]["429"]["headers"]["Retry-After"]["required"] is True
