"""`GET`/`PUT /v1/campaigns/{id}/explanation-policy`: the causes a chief picks from, the
longest snooze and how long a link lives (admin token to change; audited)."""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from services.notifier.explanations import Cause, ExplanationPolicy
from services.notifier.repository import explanations as sql
from services.notifier.repository import reference as reference_sql
from tiendo import audit
from tiendo.database import Connection
from tiendo.dependencies import Pool
from tiendo.identity.guard import Guard
from tiendo.identity.model import Identity, Role
from tiendo.web import problem_responses


class CauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z0-9_]{1,32}$")
    vi: str = Field(min_length=1, max_length=80)
    en: str = Field(min_length=1, max_length=80)


class ExplanationPolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    causes: list[CauseIn] = Field(min_length=1, max_length=20, description="a short list")
    snooze_max_hours: float = Field(72, ge=1, le=24 * 14)
    # (at least an hour: a lifetime that rounds to no second is no link at all, and the
    # table refuses it)
    link_ttl_days: float = Field(7, ge=1 / 24, le=60)

    def policy(self) -> ExplanationPolicy:
        return ExplanationPolicy(
            causes=tuple(Cause(c.code, c.vi, c.en) for c in self.causes),
            snooze_max=timedelta(hours=self.snooze_max_hours),
            link_ttl=timedelta(days=self.link_ttl_days),
        )


def _out(p: ExplanationPolicy) -> ExplanationPolicyIn:
    return ExplanationPolicyIn(
        causes=[CauseIn(code=c.code, vi=c.vi, en=c.en) for c in p.causes],
        snooze_max_hours=p.snooze_max / timedelta(hours=1),
        link_ttl_days=p.link_ttl / timedelta(days=1),
    )


def policy_router(access: Guard) -> APIRouter:
    router = APIRouter(tags=["policies"])
    Reader = Annotated[Identity, Depends(access.require(Role.reader, Role.admin))]
    Admin = Annotated[Identity, Depends(access.require(Role.admin))]
    CampaignId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]

    async def known_campaign(conn: Connection, campaign_id: str) -> None:
        # a policy of a campaign that does not exist would be stored, or read, for nothing
        if not await reference_sql.campaign_known(conn, campaign_id):
            raise HTTPException(404, f"no campaign {campaign_id}")

    @router.get(
        "/v1/campaigns/{campaign_id}/explanation-policy",
        summary="The causes chiefs explain with, the longest snooze, the links' lifetime",
        responses=problem_responses(401, 404),
    )
    async def get_explanation_policy(
        campaign_id: CampaignId, pool: Pool, _: Reader
    ) -> ExplanationPolicyIn:
        async with pool.acquire() as conn:
            await known_campaign(conn, campaign_id)
            return _out(await sql.policy(conn, campaign_id))

    @router.put(
        "/v1/campaigns/{campaign_id}/explanation-policy",
        summary="Set a campaign's causes, longest snooze and links' lifetime",
        responses=problem_responses(401, 404),
    )
    async def put_explanation_policy(
        campaign_id: CampaignId, body: ExplanationPolicyIn, pool: Pool, actor: Admin
    ) -> ExplanationPolicyIn:
        async with pool.acquire() as conn, conn.transaction():
            await known_campaign(conn, campaign_id)
            await sql.save_policy(conn, campaign_id, body.policy())
            await audit.record(
                conn,
                actor=actor.name,
                action="explanation_policy.put",
                subject=campaign_id,
                details=body.model_dump(),
            )
        return body

    return router
