"""The aggregator: applies events exactly once, rolls them up, serves progress."""

import asyncio
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from pydantic import Field
from starlette.responses import JSONResponse, Response

from services.aggregator import admin, export
from services.aggregator.consumer import Applier, republish_all
from services.aggregator.guard import CampaignGuard
from services.aggregator.metrics import AggregatorMetrics
from services.aggregator.models import (
    CampaignOut,
    LeaderboardOut,
    UnitOut,
    UnitProgressOut,
    UnitRef,
    campaign_out,
)
from services.aggregator.progress import leaderboard, progress_of
from services.aggregator.repository import reference as reference_sql
from services.aggregator.settings import AggregatorSettings
from services.aggregator.snapshot import unit_figures
from tiendo.background import Beat, Loop, Supervisor, every
from tiendo.board.campaign import Campaign
from tiendo.board.window import WindowValues
from tiendo.clock import Clock, SystemClock
from tiendo.database import Connection, create_pool, migrate
from tiendo.kafka import TopicSpec, ensure_topics, event_topics, reliable_producer
from tiendo.logs import get_logger
from tiendo.web import (
    ProblemError,
    RequestIdMiddleware,
    add_ops_routes,
    install_problem_handlers,
    problem_responses,
)

log = get_logger(__name__)
T = TypeVar("T")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

UnitCode = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,32}$", description="unit code")]
CampaignId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="campaign id")]


def create_app(settings: AggregatorSettings, clock: Clock | None = None) -> FastAPI:
    clock = clock or SystemClock()
    metrics = AggregatorMetrics()
    guard = CampaignGuard(metrics.campaign_unusable)
    supervisor = Supervisor(metrics.registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url, max_size=6)
        async with pool.acquire() as conn:
            await migrate(conn, "tiendo", "tiendo")
            await migrate(conn, "aggregator", "services.aggregator")
        app.state.pool = pool
        async with pool.acquire() as conn:
            await guard.refresh(conn)
        loops = [
            Loop(
                "unit_metrics",
                lambda beat: _refresh_metrics(pool, beat),
                stale_after=every(settings.metrics_refresh_seconds),
            ),
            Loop(
                "campaign_check",
                lambda beat: _check_campaigns(pool, beat),
                stale_after=every(settings.campaign_check_seconds),
            ),
        ]
        producer: AIOKafkaProducer | None = None
        if settings.consume:
            await ensure_topics(
                settings.kafka_bootstrap,
                [
                    *event_topics(
                        settings.topic_events,
                        settings.topic_dead_letters,
                        settings.topic_partitions,
                    ),
                    TopicSpec(settings.topic_progress, settings.topic_partitions, compacted=True),
                ],
                wait_seconds=120,
            )
            producer = reliable_producer(settings.kafka_bootstrap, client_id="tiendo-aggregator")
            await producer.start()
            sent = await republish_all(pool, producer, settings.topic_progress, clock, guard.ids)
            log.info("progress_feed_republished", rows=sent)
            applier = Applier(settings, pool, producer, metrics, clock, guard=guard)
            app.state.applier = applier
            # polls every poll_timeout_ms, idle or not
            loops.append(Loop("consumer", applier.run, stale_after=every(1.0)))
        supervisor.start(loops)
        log.info("aggregator_started", port=settings.port)
        try:
            yield
        finally:
            await supervisor.stop()
            if producer is not None:
                await producer.stop()
            await pool.close()
            log.info("aggregator_stopped")

    async def _refresh_metrics(pool: asyncpg.Pool, beat: Beat) -> None:
        window_values = WindowValues(timedelta(seconds=settings.metrics_window_refresh_seconds))
        while True:
            async with pool.acquire() as conn:
                metrics.units.snapshot = await unit_figures(
                    conn, settings.metrics_unit_level, clock.now(), window_values, guard.ids
                )
            beat()
            await asyncio.sleep(settings.metrics_refresh_seconds)

    async def _check_campaigns(pool: asyncpg.Pool, beat: Beat) -> None:
        while True:
            await asyncio.sleep(settings.campaign_check_seconds)
            async with pool.acquire() as conn:
                await guard.refresh(conn)
            beat()

    app = FastAPI(
        title="tiendo aggregator",
        version="1",
        summary="Live counters, progress, pace and projections per unit",
        description=(
            "Reads: units, campaigns and per-unit progress (now or `as_of` any past moment). "
            "Admin writes (bearer admin token): the unit tree, campaigns and targets."
        ),
        lifespan=lifespan,
    )
    app.add_middleware(RequestIdMiddleware)
    install_problem_handlers(app)
    add_ops_routes(app, metrics.registry)

    def pool_of(request: Request) -> asyncpg.Pool:
        pool: asyncpg.Pool = request.app.state.pool
        return pool

    def require_admin(
        authorization: Annotated[str | None, Header()] = None,
        x_tiendo_actor: Annotated[
            str | None, Header(max_length=100, description="who makes the change (audit log)")
        ] = None,
    ) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), settings.admin_token.encode()
        ):
            raise HTTPException(
                401,
                "an admin bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="tiendo-admin"'},
            )
        return f"admin:{x_tiendo_actor}" if x_tiendo_actor else "admin"

    Pool = Annotated[asyncpg.Pool, Depends(pool_of)]

    def moment(as_of: datetime | None) -> datetime:
        """The moment a read is about: `as_of` (never later than now), or now."""
        if as_of is not None and as_of.tzinfo is None:
            raise HTTPException(422, "as_of needs an offset")
        now = clock.now()
        return min(as_of, now) if as_of is not None else now

    async def campaign_row(conn: Connection, campaign_id: str) -> asyncpg.Record:
        row = await conn.fetchrow(reference_sql.SELECT_CAMPAIGN, campaign_id)
        if row is None:
            raise HTTPException(404, f"no campaign {campaign_id}")
        return row

    Admin = Annotated[str, Depends(require_admin)]

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Database reachable and every background loop alive; names the campaigns "
        "left out of counting",
        responses={503: {"description": "a background loop is dead or stale"}},
    )
    async def readyz(pool: Pool) -> JSONResponse:
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        # An unusable campaign is the administrators' to fix; the others keep counting, so
        # it does not make the service unready: it is named, with why.
        return supervisor.readiness(campaigns_unusable=guard.reasons())

    @app.get(
        "/v1/units/{code}",
        tags=["units"],
        response_model=UnitOut,
        summary="A unit, its parent chain and its children",
        responses=problem_responses(404, 422),
    )
    async def get_unit(code: UnitCode, pool: Pool) -> UnitOut:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(reference_sql.SELECT_UNIT, code)
            if row is None:
                raise HTTPException(404, f"no unit {code}")
            chain = {
                r["code"]: r
                for r in await conn.fetch(
                    reference_sql.SELECT_UNITS_BY_CODE, list(row["ancestors"])
                )
            }
            children = await conn.fetch(reference_sql.SELECT_CHILDREN, code)
        return UnitOut(
            code=row["code"],
            name=row["name"],
            type=row["type"],
            level=row["level"],
            parent=row["parent_code"],
            ancestors=[_ref(chain[a]) for a in row["ancestors"] if a in chain],
            children=[_ref(c) for c in children],
        )

    @app.get("/v1/campaigns", tags=["campaigns"], response_model=list[CampaignOut])
    async def list_campaigns(pool: Pool) -> list[CampaignOut]:
        async with pool.acquire() as conn:
            rows = await conn.fetch(reference_sql.SELECT_CAMPAIGNS)
        return [campaign_out(Campaign.from_row(r)) for r in rows]

    @app.get(
        "/v1/campaigns/{campaign_id}",
        tags=["campaigns"],
        response_model=CampaignOut,
        responses=problem_responses(404, 422),
    )
    async def get_campaign(campaign_id: CampaignId, pool: Pool) -> CampaignOut:
        async with pool.acquire() as conn:
            row = await campaign_row(conn, campaign_id)
        return campaign_out(Campaign.from_row(row))

    @app.get(
        "/v1/campaigns/{campaign_id}/progress/{unit}",
        tags=["progress"],
        response_model=UnitProgressOut,
        responses=problem_responses(404, 422),
        summary="Progress of a unit per indicator, now or as of a past moment",
    )
    async def get_progress(
        campaign_id: CampaignId,
        unit: UnitCode,
        pool: Pool,
        as_of: Annotated[
            datetime | None, Query(description="RFC 3339 with offset; default now")
        ] = None,
    ) -> UnitProgressOut:
        at = moment(as_of)
        async with pool.acquire() as conn:
            row = await campaign_row(conn, campaign_id)
            unit_row = await conn.fetchrow(reference_sql.SELECT_UNIT, unit)
            if unit_row is None:
                raise HTTPException(404, f"no unit {unit}")
            children = [c["code"] for c in await conn.fetch(reference_sql.SELECT_CHILDREN, unit)]
            indicators = await progress_of(
                conn, Campaign.from_row(row), unit, children, at, live=as_of is None
            )
        return UnitProgressOut(
            campaign=campaign_id, unit=_ref(unit_row), as_of=at, indicators=indicators
        )

    @app.get(
        "/v1/campaigns/{campaign_id}/leaderboard",
        tags=["progress"],
        response_model=LeaderboardOut,
        responses={
            **problem_responses(404, 422),
            200: {
                "content": {
                    "text/csv": {},
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
                },
                "description": "JSON, or the whole ranking as CSV or XLSX with format=",
            },
        },
        summary="Every unit of a level with a target, ranked by pct (ties: higher pace, then code)",
    )
    async def get_leaderboard(
        campaign_id: CampaignId,
        pool: Pool,
        level: Annotated[int, Query(ge=1, le=6, description="unit level to rank")],
        indicator: Annotated[str, Query(min_length=1, max_length=48)],
        as_of: Annotated[datetime | None, Query(description="RFC 3339; default now")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        format: Annotated[
            Literal["json", "csv", "xlsx"],
            Query(description="csv and xlsx export the whole ranking for the weekly briefing"),
        ] = "json",
    ) -> Any:
        at = moment(as_of)
        async with pool.acquire() as conn:
            row = await campaign_row(conn, campaign_id)
            campaign = Campaign.from_row(row)
            if indicator not in campaign.indicators:
                raise HTTPException(422, f"{indicator} is not an indicator of {campaign_id}")
            rows = await leaderboard(conn, campaign, indicator, level, at, live=as_of is None)
        filename = f"{campaign_id}-{indicator}-L{level}"
        if format == "csv":
            return Response(
                export.to_csv(rows),
                media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
            )
        if format == "xlsx":
            title = f"{campaign.name} — {indicator} — cấp {level} — {at:%Y-%m-%d %H:%M} UTC"
            return Response(
                export.to_xlsx(rows, title),
                media_type=XLSX,
                headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'},
            )
        return LeaderboardOut(
            campaign=campaign_id,
            indicator=indicator,
            level=level,
            as_of=at,
            total=len(rows),
            offset=offset,
            limit=limit,
            rows=rows[offset : offset + limit],
        )

    async def _admin_call(pool: asyncpg.Pool, call: Callable[[Connection], Awaitable[T]]) -> T:
        """Run an admin change in its own transaction; then check the campaigns again."""
        try:
            async with pool.acquire() as conn, conn.transaction():
                result = await call(conn)
        except admin.ReferenceError as exc:
            raise ProblemError(
                422,
                f"{len(exc.problems)} problem(s); nothing was changed",
                [p.as_error() for p in exc.problems],
                slug="invalid-reference-data",
            ) from exc
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from exc
        async with pool.acquire() as conn:
            await guard.refresh(conn)
        return result

    @app.put(
        "/v1/units",
        tags=["admin"],
        summary="Bulk upsert of the unit tree and contacts",
        responses=problem_responses(401, 422),
    )
    async def put_units(
        units: Annotated[list[admin.UnitIn], Field(max_length=20_000)],
        pool: Pool,
        actor: Admin,
    ) -> dict[str, int]:
        n = await _admin_call(pool, lambda conn: admin.upsert_units(conn, units, actor))
        return {"upserted": n}

    @app.put(
        "/v1/campaigns/{campaign_id}",
        tags=["admin"],
        summary="Create or change a campaign",
        responses=problem_responses(401, 422),
    )
    async def put_campaign(
        campaign_id: CampaignId, body: admin.CampaignIn, pool: Pool, actor: Admin
    ) -> CampaignOut:
        async def change(conn: Connection) -> asyncpg.Record | None:
            await admin.upsert_campaign(conn, campaign_id, body, actor)
            return await conn.fetchrow(reference_sql.SELECT_CAMPAIGN, campaign_id)

        row = await _admin_call(pool, change)
        assert row is not None  # upserted in this transaction
        return campaign_out(Campaign.from_row(row))

    @app.put(
        "/v1/campaigns/{campaign_id}/targets",
        tags=["admin"],
        summary="Bulk upsert of targets",
        responses=problem_responses(401, 404, 422),
    )
    async def put_targets(
        campaign_id: CampaignId,
        targets: Annotated[list[admin.TargetIn], Field(max_length=200_000)],
        pool: Pool,
        actor: Admin,
    ) -> dict[str, int]:
        n = await _admin_call(
            pool, lambda conn: admin.upsert_targets(conn, campaign_id, targets, actor)
        )
        return {"upserted": n}

    return app


def _ref(row: asyncpg.Record) -> UnitRef:
    return UnitRef(code=row["code"], name=row["name"], level=row["level"])
