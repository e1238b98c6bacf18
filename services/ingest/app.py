"""The ingest service: authenticated, validated events in; Kafka-acknowledged 202 out."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from starlette.responses import JSONResponse, Response

from services.ingest import tokens
from services.ingest.catalog import CatalogCache
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import KafkaUnavailable, Publisher
from services.ingest.schemas import Accepted, EventBatchIn, EventIn, Readiness
from services.ingest.settings import IngestSettings
from services.ingest.validation import out_of_scope, validate_body
from tiendo.database import create_pool, migrate
from tiendo.event import Event
from tiendo.kafka import TopicSpec, ensure_topics
from tiendo.logs import get_logger
from tiendo.web import (
    RequestIdMiddleware,
    add_ops_routes,
    install_problem_handlers,
    problem,
    problem_responses,
)

log = get_logger(__name__)

_JSON_TYPES = ("application/json",)
_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"$ref": "#/components/schemas/EventIn"},
                    {"$ref": "#/components/schemas/EventBatchIn"},
                ]
            }
        }
    },
}


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: IngestSettings) -> FastAPI:
    metrics = IngestMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url, max_size=4)
        async with pool.acquire() as conn:
            await migrate(conn, "tiendo", "tiendo")
            await migrate(conn, "ingest", "services.ingest")
        cache = CatalogCache(pool)
        publisher = Publisher(
            settings.kafka_bootstrap, settings.topic_events, settings.publish_timeout_seconds
        )
        app.state.cache = cache
        app.state.publisher = publisher
        tasks = [
            asyncio.create_task(_start_catalog(cache, settings.catalog_refresh_seconds)),
            asyncio.create_task(_start_kafka(settings, publisher, metrics)),
        ]
        log.info("ingest_started", port=settings.port)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await publisher.close()
            await pool.close()
            metrics.kafka_ready.set(0)
            log.info("ingest_stopped")

    app = FastAPI(
        title="tiendo ingest",
        version="1",
        summary="Progress events from upstream systems into tiendo",
        description=(
            "Upstream systems (ID-card issuance, VNeID, household registry, ward report "
            "forms) POST progress events here. An event answered **202** is durably stored "
            "in Kafka and will be counted exactly once; anything else may be retried with "
            "the same `event_id`. Errors are `application/problem+json` (RFC 9457)."
        ),
        lifespan=lifespan,
    )
    app.add_middleware(RequestIdMiddleware)
    install_problem_handlers(app)
    add_ops_routes(app, metrics.registry)

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Kafka reachable and catalogue loaded",
        response_model=Readiness,
        responses={503: {"model": Readiness}},
    )
    async def readyz(request: Request) -> JSONResponse:
        publisher: Publisher = request.app.state.publisher
        cache: CatalogCache = request.app.state.cache
        kafka_ok = await publisher.reachable()
        ok = kafka_ok and cache.loaded
        body = Readiness(
            status="ready" if ok else "not ready", kafka=kafka_ok, catalog=cache.loaded
        )
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.post(
        "/v1/events",
        tags=["events"],
        summary="Submit one event or a batch of up to 1,000",
        status_code=202,
        response_model=Accepted,
        openapi_extra={"requestBody": _REQUEST_BODY},
        responses=problem_responses(400, 401, 403, 413, 415, 422, 503),
    )
    async def post_events(request: Request) -> Response:
        started = time.perf_counter()
        response = await _handle(request)
        metrics.requests.labels(str(response.status_code)).inc()
        metrics.request_duration.observe(time.perf_counter() - started)
        return response

    async def _handle(request: Request) -> Response:
        cache: CatalogCache = request.app.state.cache
        publisher: Publisher = request.app.state.publisher
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_body_bytes:
            return _reject(
                "body_too_large",
                problem(413, f"the body is larger than {settings.max_body_bytes} bytes"),
            )
        token = tokens.bearer(request.headers.get("authorization"))
        grant = await cache.grant(tokens.digest(token)) if token else None
        if grant is None:
            return _reject(
                "unauthorized",
                problem(
                    401,
                    "a valid bearer token is required",
                    headers={"WWW-Authenticate": 'Bearer realm="tiendo"'},
                ),
            )
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in _JSON_TYPES:
            return _reject("unsupported_media_type", problem(415, "send application/json"))
        try:
            raw = await _read_body(request, settings.max_body_bytes)
        except _TooLarge:
            return _reject(
                "body_too_large",
                problem(413, f"the body is larger than {settings.max_body_bytes} bytes"),
            )
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _reject("malformed_json", problem(400, f"malformed JSON: {exc}"))
        now = datetime.now(UTC)
        tolerance = timedelta(seconds=settings.future_tolerance_seconds)
        events, errors = validate_body(
            body, cache.catalog, now, max_batch=settings.max_batch, future_tolerance=tolerance
        )
        if any(
            e.message in ("unknown unit code", "not in the indicator catalogue") for e in errors
        ):
            # A unit created seconds ago may not be in the cache yet.
            await cache.refresh_after_miss()
            events, errors = validate_body(
                body, cache.catalog, now, max_batch=settings.max_batch, future_tolerance=tolerance
            )
        if errors:
            return _reject(
                "invalid",
                problem(
                    422,
                    f"{len(errors)} problem(s) in the request; nothing was accepted",
                    slug="invalid-event",
                    errors=[
                        {"index": e.index, "field": e.field, "message": e.message} for e in errors
                    ],
                ),
                count=max(1, len(events)),
            )
        for index, event in enumerate(events):
            reason = out_of_scope(event, cache.catalog, grant.units, grant.indicators)
            if reason is not None:
                return _reject(
                    "forbidden",
                    problem(
                        403,
                        reason,
                        slug="out-of-scope",
                        errors=[
                            {
                                "index": index,
                                "field": "indicator" if "indicator" in reason else "unit",
                                "message": reason,
                            }
                        ],
                    ),
                    count=len(events),
                )
        events = [_with_source(e, grant.name) for e in events]
        try:
            await publisher.publish(events)
        except KafkaUnavailable as exc:
            log.warning("kafka_unavailable", error=str(exc), events=len(events))
            metrics.kafka_ready.set(0)
            return _reject(
                "kafka_unavailable",
                problem(
                    503,
                    "Kafka could not take the events; retry with the same event_ids",
                    headers={"Retry-After": str(settings.retry_after_seconds)},
                ),
                count=len(events),
            )
        metrics.kafka_ready.set(1)
        metrics.batch_size.observe(len(events))
        by_indicator: dict[str, int] = {}
        for event in events:
            by_indicator[event.indicator] = by_indicator.get(event.indicator, 0) + 1
        for indicator, count in by_indicator.items():
            metrics.events_accepted.labels(indicator).inc(count)
        return JSONResponse({"accepted": len(events)}, status_code=202)

    def _reject(reason: str, response: Response, count: int = 1) -> Response:
        metrics.events_rejected.labels(reason).inc(count)
        return response

    def openapi() -> dict[str, Any]:
        # The handler reads the raw body itself (size limit, precise errors), so the
        # request models are added to the schema here for clients and fuzzers.
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (EventIn, EventBatchIn):
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _with_source(event: Event, source: str) -> Event:
    return replace(event, source=source)


async def _start_catalog(cache: CatalogCache, every: float) -> None:
    while not cache.loaded:
        try:
            await cache.refresh()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("catalog_load_failed", error=str(exc))
            await asyncio.sleep(1.0)
    await cache.run(every)


async def _start_kafka(
    settings: IngestSettings, publisher: Publisher, metrics: IngestMetrics
) -> None:
    await ensure_topics(
        settings.kafka_bootstrap,
        [
            TopicSpec(settings.topic_events, settings.topic_partitions),
            TopicSpec(settings.topic_dead_letters, 1),
        ],
        wait_seconds=float("inf"),
    )
    await publisher.connect_forever()
    metrics.kafka_ready.set(1)
