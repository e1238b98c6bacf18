"""The notifier: the board judged, alert lifecycle persisted, grouped notifications out.

consume `unit-progress` (which keys moved) → judge those keys on the board's figures →
plan messages → commit offsets; and on a clock, or within a second of an admin change
seen in the audit log: judge every targeted key (silent units fall behind too, a missed
feed message is repaired), rank the briefing, escalate, close ended campaigns, digest. The
outbox delivers what the plans queued."""

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.notifier import MIGRATIONS
from services.notifier.briefing.routes import briefing_router
from services.notifier.channels import (
    Channel,
    ChatChannel,
    EmailChannel,
    WebhookChannel,
)
from services.notifier.contacts_api import contacts_router
from services.notifier.evaluator import Evaluator
from services.notifier.groups import silence_of, silenced_by
from services.notifier.metrics import NotifierMetrics
from services.notifier.outbox import Outbox
from services.notifier.pages.policy import policy_router
from services.notifier.pages.revocation import revocation_router
from services.notifier.pages.routes import links_router
from services.notifier.policy import Policy, PolicyOverride, effective
from services.notifier.privacy import shown_notification
from services.notifier.render import Renderer
from services.notifier.repository import alerts as alert_sql
from services.notifier.repository import deliveries as delivery_sql
from services.notifier.repository import reference as reference_sql
from services.notifier.rules import Rule
from services.notifier.settings import NotifierSettings
from services.notifier.summary import Summary
from tiendo.background import Beat, Loop, Supervisor, every
from tiendo.board.repository import NamedVersion, version_named
from tiendo.clock import Clock, SystemClock
from tiendo.counting import Key
from tiendo.database import BIGINT_MAX, Connection
from tiendo.dependencies import Pool
from tiendo.events import unit_progress
from tiendo.identity.audit_api import audit_routes
from tiendo.identity.guard import Guard
from tiendo.identity.model import Identity, Role
from tiendo.kafka import TopicSpec, start_whole
from tiendo.lifespan import open_database, open_topics, ping, start_loops, started, teardown
from tiendo.logs import get_logger
from tiendo.moments import Moment
from tiendo.nul_guard import NulGuardMiddleware
from tiendo.unit_keys import KEY_LENGTH, KEY_PATTERN
from tiendo.web import (
    ProblemError,
    RequestIdMiddleware,
    add_ops_routes,
    install_problem_handlers,
    problem_responses,
)

log = get_logger(__name__)
CODE = r"^[A-Za-z0-9_.-]{1,64}$"


class SilenceIn(BaseModel):
    """Mute notifications of matching alerts until `ends_at` (they still evaluate and show)."""

    model_config = ConfigDict(extra="forbid")

    campaign: str | None = Field(None, pattern=CODE)
    unit: str | None = Field(
        None,
        pattern=KEY_PATTERN,
        description="the unit and its whole subtree: a version's key, or an official code "
        "read on the tree in force at `starts_at` (the answer's `unit` is the key it named)",
    )
    indicator: str | None = Field(None, pattern=r"^[a-z0-9_]{1,48}$")
    rule: Rule | None = None
    starts_at: Moment | None = Field(None, description="default: now")
    ends_at: Moment
    comment: str = Field("", max_length=500)
    created_by: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="on whose behalf (default: the caller); the audit log names the caller",
    )

    @model_validator(mode="after")
    def _check(self) -> "SilenceIn":
        if not any((self.campaign, self.unit, self.indicator, self.rule)):
            raise ValueError(
                "a silence needs at least one matcher (campaign, unit, indicator, rule)"
            )
        return self


class PolicyOut(BaseModel):
    campaign: str
    override: dict[str, Any]
    effective: Policy


def _channels(settings: NotifierSettings, client: httpx.AsyncClient) -> dict[str, Channel]:
    channels: dict[str, Channel] = {
        "webhook": WebhookChannel(client, settings.webhook_secret),
        "chat": ChatChannel(timeout=settings.delivery_timeout_seconds),
    }
    if settings.smtp_host:
        channels["email"] = EmailChannel(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_sender,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            timeout=settings.delivery_timeout_seconds,
        )
    return channels


def create_app(
    settings: NotifierSettings,
    clock: Clock | None = None,
    channels: dict[str, Channel] | None = None,
) -> FastAPI:
    """The notifier. `clock` is the one source of time of the alert timeline (a
    `ManualClock` runs it on simulated time); `channels` replaces the configured ones."""
    clock = clock or SystemClock()
    metrics = NotifierMetrics()
    renderer = Renderer(settings.templates_dir)
    supervisor = Supervisor(metrics.registry)
    access = Guard(settings, "tiendo-notifier")

    async def consume(pool: asyncpg.Pool, evaluator: Evaluator, beat: Beat) -> None:
        consumer = AIOKafkaConsumer(
            settings.topic_progress,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.group_id,
            client_id="tiendo-notifier",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        try:
            # inside the try: a cancel during start-up must still close the consumer
            await start_whole(consumer)
            while True:
                beat()
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                if not batches:
                    continue
                keys: set[Key] = set()
                # The feed says which keys moved; their figures are read from the board.
                # The aggregator republishes the same keys with every batch it applies:
                # take in what arrives over a short window and judge each key once
                # (alerts wait minutes by design; this is a second).
                window_ends = asyncio.get_running_loop().time() + settings.feed_coalesce_seconds
                while True:
                    for records in batches.values():
                        for record in records:
                            try:
                                moved = unit_progress.decode(record.value)
                            except unit_progress.UndecodableProgress as exc:
                                # passed over, not retried: raised, the loop restarted on
                                # the same record forever, and the feed stalled behind it
                                # (the clock's full pass judges every key anyway)
                                metrics.feed_skipped.inc()
                                log.warning(
                                    "feed_record_skipped",
                                    partition=record.partition,
                                    offset=record.offset,
                                    error=str(exc),
                                )
                                continue
                            keys.add(Key(moved.campaign_id, moved.unit, moved.indicator))
                    left = window_ends - asyncio.get_running_loop().time()
                    if left <= 0:
                        break
                    batches = await consumer.getmany(
                        timeout_ms=max(1, int(left * 1000)), max_records=1000
                    )
                await evaluator.evaluate_at(pool, clock.now(), sorted(keys))
                # Judged before the commit: a crash re-reads, never skips (and the clock's
                # full pass repairs whatever a lost message would have missed).
                await consumer.commit()
        finally:
            await consumer.stop()

    async def tick(pool: asyncpg.Pool, evaluator: Evaluator, beat: Beat) -> None:
        loop = asyncio.get_running_loop()
        seen = await reference_sql.reference_version(pool)
        while True:
            await evaluator.evaluate_at(pool, clock.now())
            beat()
            # Until the next period, or sooner when an administrator changed something
            # (campaign, targets, tree, policy: every change writes the audit log).
            due = loop.time() + settings.evaluate_every_seconds
            while (left := due - loop.time()) > 0:
                await asyncio.sleep(min(left, settings.admin_watch_seconds))
                beat()
                version = await reference_sql.reference_version(pool)
                if version != seen:
                    seen = version
                    break

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with teardown("notifier") as stack:
            pool = await open_database(stack, app, settings, MIGRATIONS, max_size=8)
            await access.start(pool)
            await open_topics(
                settings,
                [TopicSpec(settings.topic_progress, settings.topic_partitions, compacted=True)],
                group=settings.group_id,
            )
            client = httpx.AsyncClient(timeout=settings.delivery_timeout_seconds)
            stack.push_async_callback(client.aclose)
            chosen = channels if channels is not None else _channels(settings, client)
            evaluator = Evaluator(settings, renderer, chosen.keys(), metrics)
            outbox = Outbox(
                pool,
                chosen,
                metrics,
                max_attempts=settings.delivery_attempts,
                poll_seconds=settings.delivery_poll_seconds,
                backoff_seconds=settings.delivery_backoff_seconds,
                backoff_max_seconds=settings.delivery_backoff_max_seconds,
                timeout_seconds=settings.delivery_timeout_seconds,
                lease_seconds=settings.delivery_lease_seconds,
                concurrency=settings.delivery_concurrency,
                fallback_webhook=settings.webhook_url,
            )

            async def evaluate_at(at: datetime | None = None) -> Summary:
                return await evaluator.evaluate_at(pool, at or clock.now())

            app.state.settings = settings
            app.state.outbox = outbox
            app.state.evaluator = evaluator
            app.state.evaluate_at = evaluate_at
            # Supervised: restarted with backoff on any exception, and in /readyz (stale
            # when it has not beaten for a few periods: a pass of the national tree takes
            # seconds, a feed pass a fraction of one).
            start_loops(
                stack,
                supervisor,
                [
                    Loop(
                        "feed",
                        lambda beat: consume(pool, evaluator, beat),
                        stale_after=every(settings.feed_coalesce_seconds + 1),
                    ),
                    Loop(
                        "clock",
                        lambda beat: tick(pool, evaluator, beat),
                        stale_after=every(settings.evaluate_every_seconds),
                    ),
                    Loop("outbox", lambda beat: outbox.run()),
                ],
            )
            started("notifier", port=settings.port, replica=outbox.replica)
            yield

    app = FastAPI(
        title="tiendo notifier",
        version="1",
        summary="Alerts for units that fall behind, delivered once to their chiefs",
        lifespan=lifespan,
    )
    app.add_middleware(NulGuardMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    install_problem_handlers(app)
    add_ops_routes(app, metrics.registry)
    app.include_router(contacts_router(access, channels or {}, clock))
    app.include_router(briefing_router(settings, clock, access))
    app.include_router(links_router(settings, clock))
    app.include_router(policy_router(access))
    app.include_router(revocation_router(access, clock))

    # Each route names its owner (docs/access.md); a reader sees its unit subtrees only.
    Reader = Annotated[Identity, Depends(access.require(Role.reader, Role.admin))]
    Admin = Annotated[Identity, Depends(access.require(Role.admin))]
    app.include_router(audit_routes(access))
    CampaignId = Annotated[str, Path(pattern=CODE)]

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Database reachable and every background loop alive",
        responses={503: {"description": "a background loop is dead or stale"}},
    )
    async def readyz(pool: Pool) -> Response:
        await ping(pool)
        return supervisor.readiness()

    @app.get("/v1/alerts", tags=["alerts"], summary="Alert instances")
    async def list_alerts(
        pool: Pool,
        who: Reader,
        state: Literal["pending", "firing", "resolved"] | None = None,
        campaign: Annotated[str | None, Query(max_length=64)] = None,
        unit: Annotated[str | None, Query(max_length=KEY_LENGTH)] = None,
        rule: Rule | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        now = clock.now()
        async with pool.acquire() as conn:
            rows = await alert_sql.list_alerts(
                conn,
                state=state,
                campaign=campaign,
                unit=unit,
                rule=rule.value if rule else None,
                limit=limit,
                scope=who.scope(),
            )
            silences = [silence_of(r) for r in await reference_sql.active_silences(conn, now)]
        out = []
        for r in rows:
            item = _jsonable(r)
            ancestors: Sequence[str] = item.pop("ancestors", None) or []
            item["silenced_by"] = (
                silenced_by(
                    silences, r["campaign_id"], r["unit"], ancestors, r["indicator"], r["rule"], now
                )
                if r["state"] != "resolved"
                else []
            )
            out.append(item)
        return out

    @app.get("/v1/notifications", tags=["alerts"], summary="The delivery log")
    async def list_notifications(
        pool: Pool,
        who: Reader,
        status: Literal["pending", "sending", "delivered", "failed"] | None = None,
        alert_id: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
        recipient: Annotated[str | None, Query(max_length=64)] = None,
        # `none`: a message that reached nobody (no chief's contact, no fallback webhook)
        channel: Literal["email", "webhook", "chat", "none"] | None = None,
        kind: Literal["firing", "resolved", "repeat", "escalation", "digest", "commitment"]
        | None = None,
        campaign: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        async with pool.acquire() as conn:
            rows = await delivery_sql.list_notifications(
                conn,
                status=status,
                alert_id=alert_id,
                recipient=recipient,
                channel=channel,
                kind=kind,
                campaign=campaign,
                limit=limit,
                scope=who.scope(),
            )
        return [shown_notification(_jsonable(r), admin=who.role is Role.admin) for r in rows]

    async def silenced_unit(
        conn: Connection, body: SilenceIn, starts_at: datetime
    ) -> NamedVersion | None:
        """The version the silence's `unit` names; refused (422, every matcher the
        notifier does not know, by field) when a matcher names nothing that exists: such a
        silence would mute nothing, and say nothing about it."""
        errors = []
        if body.campaign is not None and not await reference_sql.campaign_known(
            conn, body.campaign
        ):
            errors.append(_problem("campaign", f"no campaign {body.campaign}"))
        named = None
        if body.unit is not None:
            named = await version_named(conn, body.unit, starts_at)
            if named is None:
                errors.append(
                    _problem(
                        "unit",
                        f"no unit {body.unit}: neither a version's key nor an official code "
                        f"in force at {starts_at.isoformat()}",
                    )
                )
        if body.indicator is not None and not await reference_sql.indicator_known(
            conn, body.indicator
        ):
            errors.append(_problem("indicator", f"no indicator {body.indicator}"))
        if errors:
            raise ProblemError(422, "the silence names what does not exist", errors)
        return named

    @app.post(
        "/v1/silences",
        tags=["silences"],
        status_code=201,
        summary="Mute matching alerts",
        responses=problem_responses(401, 422),
    )
    async def create_silence(body: SilenceIn, pool: Pool, who: Admin) -> dict[str, Any]:
        now = clock.now()
        starts_at = body.starts_at or now
        if body.ends_at <= starts_at:
            raise HTTPException(422, "ends_at must be after starts_at (default: now)")
        if body.ends_at <= now:
            # it would mute nothing, yet be stored and audited as if it did
            raise ProblemError(
                422,
                "the silence is already over",
                [_problem("ends_at", f"already over: {body.ends_at.isoformat()} is not after now")],
            )
        async with pool.acquire() as conn, conn.transaction():
            named = await silenced_unit(conn, body, starts_at)
            silence = await reference_sql.create_silence(
                conn,
                campaign=body.campaign,
                unit=named.key if named is not None else None,
                indicator=body.indicator,
                rule=body.rule.value if body.rule else None,
                starts_at=starts_at,
                ends_at=body.ends_at,
                created_by=body.created_by or who.name,
                comment=body.comment,
                actor=who.name,
            )
        log.info("silence_created", id=silence["id"], by=who.name)
        return {**_jsonable(silence), "unit_name": named.name if named is not None else None}

    @app.get("/v1/silences", tags=["silences"], summary="Silences, newest first")
    async def list_silences(
        pool: Pool,
        _: Admin,
        active: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        now = clock.now()
        async with pool.acquire() as conn:
            rows = await reference_sql.list_silences(conn, active=active, at=now, limit=limit)
        # active: begun, and not over (ends_at, or when DELETE ended it): as evaluation sees it
        return [{**_jsonable(r), "active": silence_of(r).active(now)} for r in rows]

    @app.delete(
        "/v1/silences/{silence_id}",
        tags=["silences"],
        status_code=204,
        summary="End a silence",
        responses=problem_responses(401, 404),
    )
    async def delete_silence(
        silence_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)], pool: Pool, who: Admin
    ) -> Response:
        try:
            async with pool.acquire() as conn, conn.transaction():
                # ending one that already ended changes nothing: 204 all the same
                await reference_sql.expire_silence(conn, silence_id, clock.now(), who.name)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from exc
        return Response(status_code=204)

    async def known_campaign(conn: Connection, campaign_id: str) -> None:
        """404 for a campaign the path names that does not exist: a policy of none would
        be stored, or read, for nothing."""
        if not await reference_sql.campaign_known(conn, campaign_id):
            raise HTTPException(404, f"no campaign {campaign_id}")

    @app.get(
        "/v1/campaigns/{campaign_id}/alert-policy",
        tags=["policies"],
        summary="A campaign's alert rules and timing",
        responses=problem_responses(401, 404),
    )
    async def get_policy(campaign_id: CampaignId, pool: Pool, _: Reader) -> PolicyOut:
        async with pool.acquire() as conn:
            await known_campaign(conn, campaign_id)
            override = await reference_sql.policy(conn, campaign_id) or {}
        return PolicyOut(
            campaign=campaign_id, override=override, effective=effective(settings, override)
        )

    @app.put(
        "/v1/campaigns/{campaign_id}/alert-policy",
        tags=["policies"],
        summary="Set a campaign's overrides of the default alert policy",
        responses=problem_responses(401, 404),
    )
    async def put_policy(
        campaign_id: CampaignId, body: PolicyOverride, pool: Pool, who: Admin
    ) -> PolicyOut:
        override = body.config()
        try:
            policy = effective(settings, override)
        except ValidationError as exc:
            raise HTTPException(422, str(exc)) from exc
        async with pool.acquire() as conn, conn.transaction():
            await known_campaign(conn, campaign_id)
            await reference_sql.save_policy(conn, campaign_id, override, who.name)
        return PolicyOut(campaign=campaign_id, override=override, effective=policy)

    return app


def _problem(field: str, message: str) -> dict[str, Any]:
    return {"index": None, "field": field, "message": message}


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in ("details", "attempt_log", "body") and isinstance(value, str):
            out[key] = json.loads(value)
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
        elif isinstance(value, timedelta):
            out[key] = value.total_seconds()
        else:
            out[key] = value
    return out
