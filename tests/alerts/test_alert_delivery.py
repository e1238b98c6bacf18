"""The whole path: events in through ingest, counted by the aggregator, judged by the
notifier; a lagging unit's chief gets one signed webhook message, exactly once; a unit that
catches up gets one resolved notice."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from tiendo_client.webhooks import WebhookVerifier

from devtools.localstack import KafkaBroker, free_port
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.notifier.app import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from tests.support.identities import READER
from tests.support.stack import ServiceKwargs, Topics, eventually, running
from tests.support.world import build_world, issue_token

SECRET = "test-webhook-secret"
START = datetime.now(UTC) - timedelta(days=10)


class Receiver:
    """An HTTP server on loopback that records what it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[bytes, dict[str, str]]] = []
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> dict[str, bool]:
            self.received.append((await request.body(), dict(request.headers)))
            return {"ok": True}

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    task = asyncio.create_task(r.server.serve())
    while not r.server.started:
        await asyncio.sleep(0.05)
    yield r
    r.server.should_exit = True
    await task


async def test_lagging_unit_alert_reaches_the_webhook_signed_and_once(
    database: str, kafka: KafkaBroker, topics: Topics, receiver: Receiver
) -> None:
    # 10 of 50 days elapsed: every ward is expected at 200 of 1000. District 002 has only
    # ward 00010, so it lags with it; the city (550 of 600) keeps pace.
    await build_world(database, starts_at=START)
    token = await issue_token(database)
    common: ServiceKwargs = {
        "database_url": database,
        "kafka_bootstrap": kafka.bootstrap,
        **topics.kwargs(),
    }
    ingest_app = create_ingest(IngestSettings(**common))
    aggregator_app = create_aggregator(
        AggregatorSettings(**common, group_id=f"agg-{topics.events}")
    )
    notifier_app = create_notifier(
        NotifierSettings(
            **common,
            group_id=f"ntf-{topics.events}",
            webhook_url=receiver.url,
            webhook_secret=SECRET,
            evaluate_every_seconds=0.5,
            delivery_poll_seconds=0.2,
            group_wait_seconds=0,
            digest_times="",
            bottom_rank_n=0,
        )
    )
    now = datetime.now(UTC) - timedelta(minutes=5)
    async with running(ingest_app) as ingest, running(aggregator_app) as aggregator:
        aggregator.headers.update(READER)
        # 00004 and 00007 keep pace; 00010 has done 50 of the expected 200.
        events = [
            {
                "event_id": f"{unit}-1",
                "unit": unit,
                "indicator": "cccd_collected",
                "value": value,
                "occurred_at": now.isoformat(),
            }
            for unit, value in (("00004", 250), ("00007", 250), ("00010", 50))
        ]

        async def accepted() -> None:
            r = await ingest.post(
                "/v1/events", json={"events": events}, headers={"Authorization": f"Bearer {token}"}
            )
            assert r.status_code == 202, r.text

        await eventually(accepted)

        async def counted() -> None:
            r = await aggregator.get("/v1/campaigns/c1/progress/01")
            assert r.json()["indicators"][0]["value"] == 550

        await eventually(counted)
        async with running(notifier_app) as notifier:
            notifier.headers.update(READER)
            await _scenario(ingest, notifier, receiver, token, now)


def _to(receiver: Receiver, unit: str) -> list[dict[str, Any]]:
    return [b for b in receiver.bodies() if b["recipient"]["unit"] == unit]


async def _scenario(
    ingest: httpx.AsyncClient,
    notifier: httpx.AsyncClient,
    receiver: Receiver,
    token: str,
    now: datetime,
) -> None:
    async def delivered() -> dict[str, Any]:
        bodies = _to(receiver, "00010")
        assert len(bodies) == 1
        return bodies[0]

    message = await eventually(delivered)
    assert message["kind"] == "firing"
    [alert] = message["firing"]
    assert alert["rule"] == "behind"
    assert alert["unit"] == "00010"
    assert alert["indicator"] == "cccd_collected"
    assert alert["value"] == 50
    assert alert["target"] == 1000
    assert alert["pace"] == pytest.approx(50 / 200, abs=0.01)
    assert alert["unit_name"] == "Phường Hàng Buồm"
    assert "Phường Hàng Buồm" in message["text"]
    body, headers = next(
        r for r in receiver.received if json.loads(r[0])["recipient"]["unit"] == "00010"
    )
    # Standard Webhooks (issue 16), here by the development fallback secret: the
    # endpoint has no secret of its own
    assert WebhookVerifier([SECRET]).verify(body, headers)["recipient"]["unit"] == "00010"
    assert headers["webhook-id"] == headers["x-tiendo-delivery-id"] == "c1/00010/1/webhook"
    assert _to(receiver, "00004") == []
    assert _to(receiver, "00007") == []

    # Several more clock evaluations: still firing, nothing sent again.
    await asyncio.sleep(2.0)
    assert len(_to(receiver, "00010")) == 1
    firing = (await notifier.get("/v1/alerts", params={"state": "firing"})).json()
    assert [(a["unit"], a["rule"]) for a in firing if a["unit"] == "00010"] == [("00010", "behind")]

    # The ward catches up: one resolved notice.
    r = await ingest.post(
        "/v1/events",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "event_id": "00010-catch-up",
            "unit": "00010",
            "indicator": "cccd_collected",
            "value": 400,
            "occurred_at": now.isoformat(),
        },
    )
    assert r.status_code == 202

    async def resolved() -> None:
        kinds = [b["kind"] for b in _to(receiver, "00010")]
        assert kinds == ["firing", "resolved"]

    await eventually(resolved)
    ward_alert = next(a for a in firing if a["unit"] == "00010")

    # The receiver answers before the outbox records the answer: wait for the record.
    async def logged() -> None:
        params = {"alert_id": ward_alert["id"]}
        log = (await notifier.get("/v1/notifications", params=params)).json()
        assert sorted((n["kind"], n["status"], n["attempts"]) for n in log) == [
            ("firing", "delivered", 1),
            ("resolved", "delivered", 1),
        ]

    await eventually(logged)
