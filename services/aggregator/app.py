"""The aggregator: applies events exactly once, rolls them up, serves progress."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Path, Query
from pydantic import Field
from starlette.responses import JSONResponse, Response

from services.aggregator import MIGRATIONS, admin, cutover, export
from services.aggregator.comparison import comparison_routes, store_comparisons
from services.aggregator.consumer import Applier
from services.aggregator.feed import republish_all
from services.aggregator.guard import CampaignGuard
from services.aggregator.metrics import AggregatorMetrics, UnitSnapshot
from services.aggregator.models import (
    CampaignOut,
    LeaderboardOut,
    UnitOut,
    UnitProgressOut,
    UnitRef,
    campaign_out,
)
from services.aggregator.progress import leaderboard, progress_of
from services.aggregator.recounting import RecountBegan, refuse_while_recounting
from services.aggregator.repository import reference as reference_sql
from services.aggregator.repository import tree as tree_sql
from services.aggregator.settings import AggregatorSettings
from services.aggregator.snapshot import taking_turns, unit_figures
from services.aggregator.tree_api import tree_routes
from tiendo.background import Beat, Loop, Supervisor, every
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.board.isolation import CampaignIsolation
from tiendo.board.movement import week_before
from tiendo.board.window import WindowValues
from tiendo.clock import Clock, SystemClock
from tiendo.database import Connection, one_state, spare_connection
from tiendo.dependencies import Pool
from tiendo.identity.api import identity_routes
from tiendo.identity.guard import Guard
from tiendo.identity.model import Identity, Role
from tiendo.kafka import TopicSpec, event_topics, reliable_producer
from tiendo.lifespan import open_database, open_topics, ping, start_loops, started, teardown
from tiendo.logs import get_logger
from tiendo.moments import Moment
from tiendo.nul_guard import NulGuardMiddleware
from tiendo.producers import ReplacedProducer
from tiendo.unit_keys import KEY_PATTERN
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

# A path's unit: an official code, read on the tree of the moment asked about, or a
# version's key (`00004@2025-07-01`), which names exactly that version (`unit_of`).
UnitCode = Annotated[
    str,
    Path(pattern=KEY_PATTERN, description="an official code, or a version's key"),
]
CampaignId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="campaign id")]


def create_app(settings: AggregatorSettings, clock: Clock | None = None) -> FastAPI:
    clock = clock or SystemClock()
    metrics = AggregatorMetrics()
    guard = CampaignGuard(metrics.campaign_unusable)
    # both loops that move campaigns across a cut-over: one whose move fails stays put
    moves = CampaignIsolation(metrics.campaign_move_failing, work="move")
    supervisor = Supervisor(metrics.registry)
    access = Guard(settings, "tiendo-aggregator")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with teardown("aggregator") as stack:
            # (the apply holds its connections for its life, and the held events' loop one;
            # the reads share the rest)
            pool = await open_database(
                stack, app, settings, MIGRATIONS, max_size=5 + settings.apply_connections + 1
            )
            await access.start(pool)
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
                Loop(
                    "tree_check",
                    lambda beat: _check_trees(pool, beat),
                    stale_after=every(settings.campaign_check_seconds),
                ),
            ]
            if settings.consume:
                await open_topics(
                    settings,
                    [
                        *event_topics(
                            settings.topic_events,
                            settings.topic_dead_letters,
                            settings.topic_partitions,
                        ),
                        TopicSpec(
                            settings.topic_progress, settings.topic_partitions, compacted=True
                        ),
                    ],
                    group=settings.group_id,
                )
                # replaced after a failed send: after a broker's crash an idempotent
                # producer can refuse every later batch (tiendo/producers.py)
                producers = ReplacedProducer(
                    lambda: reliable_producer(
                        settings.kafka_bootstrap, client_id="tiendo-aggregator"
                    )
                )
                stack.push_async_callback(producers.stop)
                sent = await republish_all(
                    pool, await producers.get(), settings.topic_progress, clock, guard.ids
                )
                log.info("progress_feed_republished", rows=sent)
                applier = Applier(settings, pool, producers, metrics, clock, guard=guard)
                app.state.applier = applier
                # polls every poll_timeout_ms, idle or not
                loops.append(
                    Loop(
                        "consumer",
                        applier.run,
                        stale_after=settings.consumer_stale_after_seconds,
                    )
                )
                loops.append(
                    Loop(
                        "held_events",
                        applier.release_held,
                        stale_after=every(settings.held_check_seconds),
                    )
                )
            start_loops(stack, supervisor, loops)
            started("aggregator", port=settings.port)
            yield

    async def _refresh_metrics(pool: asyncpg.Pool, beat: Beat) -> None:
        window_values = WindowValues(timedelta(seconds=settings.metrics_window_refresh_seconds))
        isolation = CampaignIsolation(metrics.campaign_failing)
        # apart from the figures': a campaign whose comparison fails still has its figures
        # judged (and the other way round), and each kind of pass clears only its own
        comparing = CampaignIsolation(metrics.campaign_comparison_failing, work="comparison")

        async def refreshed(conn: Connection) -> UnitSnapshot:
            # a campaign whose move fails has live counters on a tree it no longer reports
            # on: left out, as one flagged unusable is. One transaction of one state
            # (tiendo.database.one_state): every campaign's figures and comparisons, and
            # the look for a recount, are of one instant, so a rebuild's reset is either in
            # none of them or seen first (and the stored ones stay as they were).
            async with taking_turns(conn), one_state(conn):
                began = await board.recount_in_progress(conn)
                if began is not None:
                    raise RecountBegan(began)
                snapshot = await unit_figures(
                    conn,
                    settings.metrics_unit_level,
                    clock.now(),
                    window_values,
                    [*guard.ids, *sorted(moves.failing)],
                    isolation,
                )
                await store_comparisons(conn, clock.now(), comparing)
            return snapshot

        while True:
            async with pool.acquire() as conn:
                recounting = await board.recount_in_progress(conn)
                if recounting is None:
                    # the figures of the tree each campaign reports on now: a cut-over
                    # that passed since `tree_check` last looked moves its counters first
                    async with conn.transaction():
                        await cutover.replan_passed(conn, clock.now(), moves, retry=False)
                    try:
                        metrics.units.snapshot = await refreshed(conn)
                    except RecountBegan as began:
                        recounting = began.recounting
                metrics.recount_replayed.set(recounting.fraction if recounting else 1.0)
                metrics.recounting.set(recounting is not None)
                if recounting is not None:
                    # the counters hold part of the events: the boards keep the figures of
                    # the last refresh before it, stamped with their moment
                    log.info(
                        "figures_wait_for_recount",
                        replayed=recounting.replayed,
                        total=recounting.total,
                    )
            beat()
            await asyncio.sleep(settings.metrics_refresh_seconds)

    async def _check_campaigns(pool: asyncpg.Pool, beat: Beat) -> None:
        while True:
            await asyncio.sleep(settings.campaign_check_seconds)
            async with pool.acquire() as conn:
                await guard.refresh(conn)
            beat()

    async def _check_trees(pool: asyncpg.Pool, beat: Beat) -> None:
        # A cut-over passing a campaign moves its live counters onto the new tree: at its
        # moment (the readers meanwhile read `as_of` now, docs/units-over-time.md), and
        # every period besides, for trees loaded by another replica. A campaign whose move
        # failed is tried again only every `move_retry_seconds` (here, not in the refresh).
        retried: datetime | None = None
        retry_every = timedelta(seconds=settings.move_retry_seconds)
        while True:
            now = clock.now()
            retry = retried is None or now - retried >= retry_every
            async with pool.acquire() as conn, conn.transaction():
                upcoming = await cutover.replan_and_next(conn, now, moves, retry=retry)
            if retry:
                retried = now
            beat()
            wait = settings.campaign_check_seconds
            if upcoming is not None:
                wait = min(wait, (upcoming - clock.now()).total_seconds())
            await asyncio.sleep(max(wait, 0.0))

    app = FastAPI(
        title="tiendo aggregator",
        version="1",
        summary="Live counters, progress, pace and projections per unit",
        description=(
            "Reads: units, campaigns and per-unit progress (now or `as_of` any past moment). "
            "Admin writes (an admin identity, docs/access.md): the unit tree, campaigns, targets "
            "and identities. Every read needs a reader or admin credential."
        ),
        lifespan=lifespan,
    )
    app.add_middleware(NulGuardMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    install_problem_handlers(app)
    add_ops_routes(app, metrics.registry)

    # Each route names its owner (docs/access.md); a reader sees its unit subtrees only.
    Reader = Annotated[Identity, Depends(access.require(Role.reader, Role.admin))]
    Admin = Annotated[Identity, Depends(access.require(Role.admin))]
    app.include_router(identity_routes(access))

    def moment(as_of: datetime | None) -> datetime:
        """The moment a read is about: `as_of` (never later than now), or now."""
        now = clock.now()
        return min(as_of, now) if as_of is not None else now

    async def campaign_of(conn: Connection, campaign_id: str) -> Campaign:
        campaign = await reference_sql.campaign(conn, campaign_id)
        if campaign is None:
            raise HTTPException(404, f"no campaign {campaign_id}")
        return campaign

    def refuse_unusable(campaign_id: str) -> None:
        """A campaign the guard keeps out of counting is not judged for readers either:
        its figures would be a zone no host reads (a 500) or frozen counters (a wrong
        number). What is wrong with it is the administrators' to fix (docs/admin.md)."""
        problems = guard.unusable.get(campaign_id)
        if problems:
            raise ProblemError(
                409,
                f"campaign {campaign_id} is unusable until an administrator fixes it: "
                + "; ".join(str(p) for p in problems),
                [p.as_error() for p in problems],
                slug="campaign-unusable",
            )

    async def judged_campaign(conn: Connection, campaign_id: str) -> Campaign:
        """A campaign whose figures a read judges (`refuse_unusable`), while no rebuild is
        in progress (`refuse_while_recounting`)."""
        campaign = await campaign_of(conn, campaign_id)
        refuse_unusable(campaign_id)
        await refuse_while_recounting(conn)
        return campaign

    async def unit_of(
        conn: Connection, code: str, who: Identity, at: datetime | None = None
    ) -> reference_sql.Unit:
        """The unit a path names: an official code read on the tree in force at `at`
        (default now; 00004 is Phường Ba Đình since July 2025), a version's key as is."""
        unit = await reference_sql.unit(
            conn, await tree_sql.key_named(conn, code, at or clock.now())
        )
        # outside the caller's scope reads as absent: no existence leak
        if unit is None or not who.sees(unit.code, unit.ancestors):
            raise HTTPException(404, f"no unit {code}")
        return unit

    def live(campaign: Campaign, as_of: datetime | None, at: datetime) -> bool:
        """Whether a read of `at` reads the live counters: asked of now, and the counters
        are on the tree the campaign reports on now. From a cut-over's first moment until
        they are moved onto the new tree (`tree_check`), now is read as `as_of` now,
        which is what live is (docs/units-over-time.md "The moment of a cut-over")."""
        return as_of is None and campaign.counters_on_tree(at)

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Database reachable and every background loop alive; names the campaigns "
        "left out of counting",
        responses={503: {"description": "a background loop is dead or stale"}},
    )
    async def readyz(pool: Pool) -> JSONResponse:
        await ping(pool)
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
    async def get_unit(code: UnitCode, pool: Pool, who: Reader) -> UnitOut:
        async with pool.acquire() as conn:
            unit = await unit_of(conn, code, who)
            chain = await reference_sql.units_by_code(conn, unit.ancestors)
            children = await reference_sql.children_at(conn, unit.code, clock.now())
        return UnitOut(
            code=unit.code,
            name=unit.name,
            type=unit.type,
            level=unit.level,
            parent=unit.parent_code,
            ancestors=[_ref(chain[a]) for a in unit.ancestors if a in chain],
            children=[_ref(c) for c in children],
        )

    @app.get("/v1/campaigns", tags=["campaigns"], response_model=list[CampaignOut])
    async def list_campaigns(pool: Pool, _: Reader) -> list[CampaignOut]:
        async with pool.acquire() as conn:
            campaigns = await reference_sql.campaigns(conn)
        return [campaign_out(c) for c in campaigns]

    @app.get(
        "/v1/campaigns/{campaign_id}",
        tags=["campaigns"],
        response_model=CampaignOut,
        responses=problem_responses(404, 422),
    )
    async def get_campaign(campaign_id: CampaignId, pool: Pool, _: Reader) -> CampaignOut:
        async with pool.acquire() as conn:
            campaign = await campaign_of(conn, campaign_id)
        return campaign_out(campaign)

    @app.get(
        "/v1/campaigns/{campaign_id}/progress/{unit}",
        tags=["progress"],
        response_model=UnitProgressOut,
        responses=problem_responses(404, 409, 422, 503),
        summary="Progress of a unit per indicator, now or as of a past moment",
    )
    async def get_progress(
        campaign_id: CampaignId,
        unit: UnitCode,
        pool: Pool,
        who: Reader,
        as_of: Annotated[
            Moment | None, Query(description="RFC 3339 with offset; default now")
        ] = None,
    ) -> UnitProgressOut:
        at = moment(as_of)
        # one state: the unit's and its children's figures, and the rollups their run
        # rates come from, as they were at one instant (tiendo.database.one_state)
        async with pool.acquire() as conn, one_state(conn):
            campaign = await judged_campaign(conn, campaign_id)
            # the unit and its children on the tree the campaign reports on at that moment
            tree_at = campaign.reports_on(at)
            subject = await unit_of(conn, unit, who, tree_at)
            children = [
                c.code for c in await reference_sql.children_at(conn, subject.code, tree_at)
            ]
            indicators = await progress_of(
                conn, campaign, subject.code, children, at, live=live(campaign, as_of, at)
            )
            # (no second look for a rebuild once read: the read is of the state the first
            # look saw, so a reset committed meanwhile is in none of it)
        return UnitProgressOut(
            campaign=campaign_id, unit=_ref(subject), as_of=at, indicators=indicators
        )

    @app.get(
        "/v1/campaigns/{campaign_id}/leaderboard",
        tags=["progress"],
        response_model=LeaderboardOut,
        responses={
            **problem_responses(404, 409, 422, 503),
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
        who: Reader,
        level: Annotated[int, Query(ge=1, le=6, description="unit level to rank")],
        indicator: Annotated[str, Query(min_length=1, max_length=48)],
        as_of: Annotated[
            Moment | None, Query(description="RFC 3339 with offset; default now")
        ] = None,
        previous: Annotated[
            Moment | None,
            Query(
                description="the previous briefing, RFC 3339, that rank movement is measured "
                "from; default the end of the local day a week before as_of. Not after as_of "
                "(both read as now when later than now): a later one is refused with 422"
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        format: Annotated[
            Literal["json", "csv", "xlsx"],
            Query(description="csv and xlsx export the whole ranking for the weekly briefing"),
        ] = "json",
    ) -> Any:
        at = moment(as_of)
        if previous is not None and moment(previous) > at:
            # the arrows would measure from a later ranking than the one they stand on
            message = "must not be later than as_of (or now, without as_of)"
            raise ProblemError(
                422,
                f"previous {message}",
                [{"index": None, "field": "previous", "message": message}],
                slug="invalid-parameters",
            )
        async with pool.acquire() as conn, one_state(conn):
            campaign = await judged_campaign(conn, campaign_id)
            if indicator not in campaign.indicators:
                raise HTTPException(422, f"{indicator} is not an indicator of {campaign_id}")
            previous_at = moment(previous) if previous else week_before(campaign, at)
            reads_live = live(campaign, as_of, at)
            # a live board reads its day rollups beside its counters, when a connection is
            # free, in the same state
            async with spare_connection(pool, wanted=reads_live, sharing=conn) as beside:
                rows = await leaderboard(
                    conn,
                    campaign,
                    indicator,
                    level,
                    at,
                    live=reads_live,
                    previous_at=previous_at,
                    settle=False,
                    beside=beside,
                )
            if not who.everywhere:
                # a reader's board: the rows of its subtrees, each keeping its rank in the
                # whole ranking (where the unit stands at the briefing)
                units = await reference_sql.units_by_code(conn, [p.unit for p in rows.placed])
                rows = rows.only(lambda code: who.sees(code, units[code].ancestors))
            # days behind in a row for the rows sent: a page, or every row of an export
            shown = slice(offset, offset + limit) if format == "json" else slice(None)
            await rows.settle(conn, shown)
        filename = f"{campaign_id}-{indicator}-L{level}"
        # the exports build every row and a sheet: off the event loop, like the ranking
        if format == "csv":
            return Response(
                await asyncio.to_thread(export.to_csv, rows, campaign.timezone),
                media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
            )
        if format == "xlsx":
            title = export.sheet_title(campaign.name, indicator, level, at, campaign.timezone)
            return Response(
                await asyncio.to_thread(export.to_xlsx, rows, title, campaign.timezone),
                media_type=XLSX,
                headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'},
            )
        return LeaderboardOut(
            campaign=campaign_id,
            indicator=indicator,
            level=level,
            as_of=at,
            previous_at=previous_at,
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

    # admin changes re-plan the campaigns at the service's clock, as its loops do
    app.include_router(tree_routes(access, _admin_call, clock))
    app.include_router(comparison_routes(access, clock, refuse_unusable))

    @app.put(
        "/v1/units",
        tags=["admin"],
        summary="Bulk upsert of the unit tree and contacts",
        responses=problem_responses(401, 422),
    )
    async def put_units(
        units: Annotated[list[admin.UnitIn], Field(max_length=20_000)],
        pool: Pool,
        who: Admin,
    ) -> dict[str, int]:
        n = await _admin_call(
            pool, lambda conn: admin.upsert_units(conn, units, who.name, now=clock.now())
        )
        return {"upserted": n}

    @app.put(
        "/v1/campaigns/{campaign_id}",
        tags=["admin"],
        summary="Create or change a campaign",
        responses=problem_responses(401, 422),
    )
    async def put_campaign(
        campaign_id: CampaignId, body: admin.CampaignIn, pool: Pool, who: Admin
    ) -> CampaignOut:
        async def change(conn: Connection) -> Campaign:
            await admin.upsert_campaign(conn, campaign_id, body, who.name, now=clock.now())
            return await campaign_of(conn, campaign_id)  # upserted in this transaction

        return campaign_out(await _admin_call(pool, change))

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
        who: Admin,
    ) -> dict[str, int]:
        n = await _admin_call(
            pool,
            lambda conn: admin.upsert_targets(
                conn, campaign_id, targets, who.name, now=clock.now()
            ),
        )
        return {"upserted": n}

    return app


def _ref(unit: reference_sql.Unit) -> UnitRef:
    return UnitRef(code=unit.code, name=unit.name, level=unit.level)
