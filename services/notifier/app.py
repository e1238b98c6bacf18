"""The notifier: unit-progress in, alert lifecycle persisted, signed notifications out."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, Query, Request

from services.notifier import repository
from services.notifier.channels import Channel, WebhookChannel
from services.notifier.evaluator import Evaluator
from services.notifier.metrics import NotifierMetrics
from services.notifier.outbox import Outbox
from services.notifier.rules import Change
from services.notifier.settings import NotifierSettings
from tiendo.clock import Clock, SystemClock
from tiendo.database import create_pool, migrate
from tiendo.events.v1 import events_pb2
from tiendo.kafka import TopicSpec, ensure_topics
from tiendo.logs import get_logger
from tiendo.web import RequestIdMiddleware, add_ops_routes, install_problem_handlers

log = get_logger(__name__)


def _state_values(m: events_pb2.UnitProgress) -> tuple[object, ...]:
    return (
        m.campaign_id,
        m.unit,
        m.indicator,
        m.unit_name,
        m.level,
        m.parent or None,
        m.value,
        m.baseline,
        m.target,
        m.starts_at.ToDatetime(tzinfo=UTC),
        m.deadline.ToDatetime(tzinfo=UTC),
        m.last_event_at.ToDatetime(tzinfo=UTC) if m.HasField("last_event_at") else None,
        m.computed_at.ToDatetime(tzinfo=UTC),
        m.behind_threshold,
        timedelta(seconds=m.stale_after_seconds),
        m.timezone,
    )


async def _supervise(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except (KafkaError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.error("background_task_failed", task=name, error=repr(exc))
            await asyncio.sleep(2.0)


def create_app(
    settings: NotifierSettings,
    clock: Clock | None = None,
    channels: dict[str, Channel] | None = None,
) -> FastAPI:
    clock = clock or SystemClock()
    metrics = NotifierMetrics()
    evaluator = Evaluator(settings)

    async def evaluate_rows(pool: asyncpg.Pool, rows: list[asyncpg.Record], trigger: str) -> None:
        now = clock.now()
        async with pool.acquire() as conn:
            for row in rows:
                change = await evaluator.evaluate(conn, row, now)
                metrics.evaluations.labels(trigger).inc()
                if change is not Change.NONE:
                    metrics.transitions.labels("behind", change.value).inc()
            firing = await conn.fetchval("SELECT count(*) FROM alerts WHERE state = 'firing'")
        metrics.firing.labels("behind").set(firing)

    async def consume(pool: asyncpg.Pool) -> None:
        consumer = AIOKafkaConsumer(
            settings.topic_progress,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.group_id,
            client_id="tiendo-notifier",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                if not batches:
                    continue
                latest: dict[bytes, events_pb2.UnitProgress] = {}
                for records in batches.values():
                    for record in records:
                        message = events_pb2.UnitProgress()
                        message.ParseFromString(record.value)
                        latest[record.key] = message
                async with pool.acquire() as conn:
                    for message in latest.values():
                        await repository.upsert_state(conn, _state_values(message))
                    rows = [
                        r
                        for m in latest.values()
                        for r in await repository.states(conn, m.campaign_id, m.unit, m.indicator)
                    ]
                await evaluate_rows(pool, rows, "feed")
                # State is stored before the commit: a crash re-reads, never skips.
                await consumer.commit()
        finally:
            await consumer.stop()

    async def tick(pool: asyncpg.Pool) -> None:
        while True:
            await asyncio.sleep(settings.evaluate_every_seconds)
            async with pool.acquire() as conn:
                rows = await repository.states(conn)
            await evaluate_rows(pool, rows, "clock")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url, max_size=6)
        async with pool.acquire() as conn:
            await migrate(conn, "tiendo", "tiendo")
            await migrate(conn, "notifier", "services.notifier")
        await ensure_topics(
            settings.kafka_bootstrap,
            [
                TopicSpec(settings.topic_progress, settings.topic_partitions, compacted=True),
            ],
            wait_seconds=120,
        )
        client = httpx.AsyncClient(timeout=10.0)
        outbox = Outbox(
            pool,
            channels or {"webhook": WebhookChannel(client, settings.webhook_secret)},
            clock,
            metrics,
            settings.delivery_attempts,
            settings.delivery_poll_seconds,
        )
        app.state.pool = pool
        app.state.outbox = outbox
        tasks = [
            asyncio.create_task(_supervise("feed", lambda: consume(pool))),
            asyncio.create_task(_supervise("clock", lambda: tick(pool))),
            asyncio.create_task(_supervise("outbox", outbox.run)),
        ]
        log.info("notifier_started", port=settings.port)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await client.aclose()
            await pool.close()
            log.info("notifier_stopped")

    app = FastAPI(
        title="tiendo notifier",
        version="1",
        summary="Alerts for units that fall behind, delivered once to their chiefs",
        lifespan=lifespan,
    )
    app.add_middleware(RequestIdMiddleware)
    install_problem_handlers(app)
    add_ops_routes(app, metrics.registry)

    def pool_of(request: Request) -> asyncpg.Pool:
        pool: asyncpg.Pool = request.app.state.pool
        return pool

    Pool = Annotated[asyncpg.Pool, Depends(pool_of)]

    @app.get("/readyz", tags=["ops"], summary="Database reachable")
    async def readyz(pool: Pool) -> dict[str, str]:
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        return {"status": "ready"}

    @app.get("/v1/alerts", tags=["alerts"], summary="Alert instances")
    async def list_alerts(
        pool: Pool,
        state: Literal["pending", "firing", "resolved"] | None = None,
        campaign: Annotated[str | None, Query(max_length=64)] = None,
        unit: Annotated[str | None, Query(max_length=32)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        async with pool.acquire() as conn:
            rows = await conn.fetch(repository.SELECT_ALERTS, state, campaign, unit, limit)
        return [_jsonable(r) for r in rows]

    @app.get("/v1/notifications", tags=["alerts"], summary="The delivery log")
    async def list_notifications(
        pool: Pool,
        status: Literal["pending", "delivered", "failed"] | None = None,
        alert_id: Annotated[int | None, Query(ge=1)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        async with pool.acquire() as conn:
            rows = await conn.fetch(repository.SELECT_NOTIFICATIONS, status, alert_id, limit)
        return [_jsonable(r) for r in rows]

    return app


def _jsonable(row: asyncpg.Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key == "details" and isinstance(value, str):
            out[key] = json.loads(value)
        else:
            out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out
