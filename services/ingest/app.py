"""The ingest service: authenticated, validated events in; Kafka-acknowledged 202 out
(the request's path through `intake.Intake`)."""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from starlette.responses import JSONResponse, Response

from services.ingest import MIGRATIONS, receipts
from services.ingest.catalog import CatalogCache
from services.ingest.intake import Intake
from services.ingest.metrics import IngestMetrics
from services.ingest.openapi import patch_schema
from services.ingest.publisher import Publisher
from services.ingest.schemas import Accepted, Readiness
from services.ingest.settings import IngestSettings
from tiendo.background import Loop, Supervisor
from tiendo.identity.guard import Guard
from tiendo.kafka import ensure_topics, event_topics
from tiendo.lifespan import open_database, start_loops, started, teardown
from tiendo.logs import get_logger
from tiendo.startup import wait_for_kafka
from tiendo.web import (
    RequestIdMiddleware,
    add_ops_routes,
    install_problem_handlers,
    problem_responses,
)

log = get_logger(__name__)


def create_app(settings: IngestSettings) -> FastAPI:
    metrics = IngestMetrics()
    supervisor = Supervisor(metrics.registry)
    access = Guard(settings, "tiendo-ingest")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with teardown("ingest") as stack:
            pool = await open_database(stack, app, settings, MIGRATIONS, max_size=4)
            await access.start(pool)
            cache = CatalogCache(pool, token_max_age=settings.token_max_age_seconds)
            publisher = Publisher(
                settings.kafka_bootstrap,
                settings.topic_events,
                settings.publish_timeout_seconds,
                on_retire=metrics.producer_replacements.inc,
            )
            # Requests have been drained by the time it closes (the server stops accepting
            # on SIGTERM and waits for those in flight): it flushes what it still holds.
            stack.push_async_callback(publisher.close)
            metrics.kafka_ready.set_function(lambda: float(publisher.ready))
            metrics.tokens_fresh.set_function(lambda: float(cache.tokens_fresh()))
            app.state.cache = cache
            app.state.publisher = publisher
            start_loops(
                stack,
                supervisor,
                [
                    # units, indicators and tokens, each re-read on its own period
                    Loop(
                        "catalog",
                        lambda beat: cache.run(
                            settings.catalog_refresh_seconds, settings.token_refresh_seconds
                        ),
                    ),
                    Loop("kafka", lambda beat: _run_kafka(settings, publisher)),
                ],
            )
            started("ingest", port=settings.port)
            yield

    app = FastAPI(
        title="tiendo ingest",
        version="1",
        summary="Progress events from upstream systems into tiendo",
        description=(
            "Upstream systems (ID-card issuance, VNeID, household registry, ward report "
            "forms) POST progress events here. An event answered **202** is durably stored "
            "in Kafka and will be counted exactly once; anything else may be retried with "
            "the same `event_id`. Errors are `application/problem+json` (RFC 9457). "
            "Limits, scopes and privacy rules: docs/ingest.md."
        ),
        lifespan=lifespan,
    )
    app.add_middleware(RequestIdMiddleware)
    install_problem_handlers(app)
    add_ops_routes(app, metrics.exposed)
    intake = Intake(settings, metrics, app.state)
    app.include_router(receipts.router(intake, access))

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Kafka reachable and catalogue loaded",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready"}},
    )
    async def readyz() -> JSONResponse:
        kafka_ok = await intake.publisher.reachable()
        catalog_ok = intake.cache.loaded and intake.cache.tokens_fresh()
        ok = kafka_ok and catalog_ok and supervisor.healthy
        body = Readiness(
            status="ready" if ok else "not ready",
            kafka=kafka_ok,
            catalog=catalog_ok,
            loops=supervisor.report(),
        )
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.post(
        "/v1/events",
        tags=["events"],
        status_code=202,
        response_model=Accepted,
        # the operation is rewritten by `openapi.patch_schema`; this registers the models
        responses=problem_responses(400, 401, 403, 413, 415, 422, 429, 503),
        # the ingest role's tokens are checked by the intake; this refuses the other roles
        dependencies=[Depends(access.refuse_other_roles())],
    )
    async def post_events(request: Request) -> Response:
        started = time.perf_counter()
        metrics.in_flight.inc()
        try:
            response = await intake.handle(request)
        finally:
            metrics.in_flight.dec()
        metrics.requests.labels(str(response.status_code)).inc()
        metrics.request_duration.observe(time.perf_counter() - started)
        return response

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = patch_schema(schema, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def _run_kafka(settings: IngestSettings, publisher: Publisher) -> None:
    # Ingest serves without Kafka (503 with Retry-After): it waits in the background, and
    # after the timeout says so once and goes on waiting.
    await wait_for_kafka(
        settings.kafka_bootstrap, settings.dependency_timeout_seconds, keep_waiting=True
    )
    await ensure_topics(
        settings.kafka_bootstrap,
        event_topics(settings.topic_events, settings.topic_dead_letters, settings.topic_partitions),
        wait_seconds=float("inf"),
    )
    await publisher.run()
