"""The aggregator's and the notifier's bodies are held to `max_body_bytes` before anything
reads them, whoever sends them: a 413 like ingest's, never a 64 MiB body read whole to
answer an anonymous caller. The default holds the largest legitimate admin body with
room to spare, and is what the real services enforce (tiendo/nul_guard.py)."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from devtools.localstack import KafkaBroker
from services.aggregator.admin import TargetIn
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from services.notifier.app import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from tests.support.identities import ADMIN_SECRET, bearer
from tests.support.stack import Topics, running
from tests.support.world import build_world

MIB = 1 << 20
SMALL = 4096
JSON = {"content-type": "application/json"}
ADMIN = {**JSON, **bearer(ADMIN_SECRET)}
# the admin bodies of each service, what a caller might send
ROUTES = {"aggregator": "/v1/units", "notifier": "/v1/contacts"}


def _app(service: str, **settings: Any) -> FastAPI:
    # The guard answers before anything needs the lifespan (pool, identities) to have run.
    if service == "aggregator":
        return create_aggregator(AggregatorSettings(**settings))
    return create_notifier(NotifierSettings(**settings))


async def _put(app: FastAPI, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.put(path, **kwargs)


def _too_large(r: httpx.Response, limit: int) -> None:
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == f"the body is larger than {limit} bytes"


@pytest.mark.parametrize("service", ROUTES)
async def test_a_body_over_the_limit_is_a_413_for_anyone(service: str) -> None:
    app, path = _app(service, max_body_bytes=SMALL), ROUTES[service]
    over = b'[{"a":"' + b"x" * SMALL + b'\\u0000"}]'
    for headers in (JSON, ADMIN):
        _too_large(await _put(app, path, content=over, headers=headers), SMALL)
    # without a Content-Length: counted as it comes, refused at the limit, not read on
    pulled = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(1000):
            pulled += 1
            yield b" " * 1000

    _too_large(await _put(app, path, content=chunks(), headers=ADMIN), SMALL)
    assert pulled == SMALL // 1000 + 1


@pytest.mark.parametrize("service", ROUTES)
async def test_an_anonymous_json_body_gets_the_401_first(
    service: str, database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=datetime.now(UTC) - timedelta(days=5))
    real = {
        "database_url": database,
        "kafka_bootstrap": kafka.bootstrap,
        "group_id": f"{service}-{topics.events}",
        **topics.kwargs(),
    }
    nul = b'[{"unit":"\\u0000"}]'
    async with running(_app(service, **real)) as client:
        r = await client.put(ROUTES[service], content=nul, headers=JSON)
        assert r.status_code == 401, r.text
        # a credential offered: the body is searched before it is checked
        r = await client.put(ROUTES[service], content=nul, headers={**JSON, **bearer("nope")})
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["0.unit"]


async def test_a_chiefs_form_is_still_searched_for_nul() -> None:
    # the link pages take no credential: their forms are searched for everyone
    transport = httpx.ASGITransport(app=_app("notifier"))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.post("/l/some-token/explain", data={"detail": "mưa\0"})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["detail"]


def test_the_default_limit_holds_a_national_target_upload_twice() -> None:
    # every commune of the country (10,600) times 8 indicators, with deadlines and long
    # keys, as `tiendo aggregator import targets` sends it
    targets = [
        TargetIn(
            unit=f"{c:05d}@2025-07-01",
            indicator=f"indicator_number_{i}_of_the_campaign",
            target=123_456_789,
            baseline=12_345_678,
            deadline=datetime(2025, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        ).model_dump(mode="json")
        for c in range(10_600)
        for i in range(8)
    ]
    weight = len(json.dumps(targets).encode())
    assert 2 * weight <= AggregatorSettings().max_body_bytes == NotifierSettings().max_body_bytes


async def test_the_aggregator_takes_an_admin_body_up_to_the_default_limit(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=datetime.now(UTC) - timedelta(days=5))
    settings = AggregatorSettings(
        database_url=database,
        kafka_bootstrap=kafka.bootstrap,
        group_id=f"agg-{topics.events}",
        consume=False,
        **topics.kwargs(),
    )
    limit = settings.max_body_bytes
    unit = b'[{"code":"01","name":"Ha Noi","level":1}'
    async with running(create_aggregator(settings)) as client:
        at_limit = unit + b" " * (limit - len(unit) - 1) + b"]"
        r = await client.put("/v1/units", content=at_limit, headers=ADMIN)
        assert r.status_code == 200, r.text
        # one byte more, from an anonymous caller, with a NUL at its end: a 413, unread
        over = unit + b',{"name":"\\u0000"' + b" " * (limit - len(unit)) + b"}]"
        r = await client.put("/v1/units", content=over, headers=JSON)
        _too_large(r, limit)
