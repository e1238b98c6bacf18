"""`POST /v1/links/revoke`: an administrator withdraws a unit's live links, say one that was
forwarded, or a chief replaced while the unit's addresses stay (admin token; audited).

A contact change withdraws the links sent to the old address by itself (contacts_api.py);
this is for what the notifier cannot see. The chief gets a new link with the next
message; what was acknowledged and explained through the withdrawn ones stays, and their
snoozes end (docs/briefing.md, "Withdrawn links"; docs/alerts.md)."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from services.notifier.contacts import UNIT_PATTERN
from services.notifier.repository import links as link_sql
from services.notifier.repository import reference as reference_sql
from tiendo.board.repository import version_named
from tiendo.clock import Clock
from tiendo.dependencies import Pool
from tiendo.identity.guard import Guard
from tiendo.identity.model import Identity, Role
from tiendo.logs import get_logger
from tiendo.web import ProblemError, problem_responses

log = get_logger(__name__)

DESCRIPTION = """\
Withdraws every live link of the unit's chief (of one campaign, with `campaign`): links
sent in the unit's alert messages that have neither expired nor been withdrawn. From then
on each link's page answers 410 Gone, in Vietnamese and English, that the link was
withdrawn by an administrator, and takes no acknowledgement, snooze or explanation; what
was acknowledged and explained through it before stays (explanations are official records,
shown at the briefing). A snooze made through it ends now, audited as `snoozes.end`: whoever
held the link no longer holds the chief's reminders back, and the next repeat slot sends as
usual. The chief gets a new link with the unit's next alert message. For a link that
was forwarded, or a chief replaced while the unit's addresses stay: a contact replaced or
removed (`PUT /v1/contacts`) withdraws the links sent to the old address by itself.

Audited as `links.revoke` (the caller, the unit, the messages whose links were revoked,
`reason`); nothing to revoke changes nothing and is not audited. Repeating the call is
harmless: a withdrawn link stays withdrawn."""


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: str = Field(
        pattern=UNIT_PATTERN,
        description="the links' unit (its chief's): an official code (the version it names "
        "now, a retired code the version it keys) or a version's key",
    )
    campaign: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="only this campaign's links"
    )
    reason: str = Field(
        "",
        max_length=500,
        description="why, kept with the links and in the audit log; never shown on the page",
    )


class RevokedLink(BaseModel):
    message_id: str = Field(description="the message that carried the link")
    campaign: str
    issued_at: datetime
    expires_at: datetime


class RevokeOut(BaseModel):
    unit: str = Field(description="the version's key the links were revoked for")
    unit_name: str
    campaign: str | None
    revoked: int = Field(description="how many links were withdrawn now")
    links: list[RevokedLink]


def revocation_router(access: Guard, clock: Clock) -> APIRouter:
    router = APIRouter(tags=["links"])
    Admin = Annotated[Identity, Depends(access.require(Role.admin))]

    @router.post(
        "/v1/links/revoke",
        summary="Withdraw a unit's links",
        description=DESCRIPTION,
        responses=problem_responses(401, 403, 422),
    )
    async def revoke_links(body: RevokeIn, pool: Pool, actor: Admin) -> RevokeOut:
        now = clock.now()
        async with pool.acquire() as conn, conn.transaction():
            # read as the contacts API reads a unit it shows: a retired code is the
            # version it keys, whose chief may still hold live links
            named = await version_named(conn, body.unit, now)
            errors = []
            if named is None:
                errors.append(_problem("unit", f"no unit {body.unit}"))
            if body.campaign is not None and not await reference_sql.campaign_known(
                conn, body.campaign
            ):
                errors.append(_problem("campaign", f"no campaign {body.campaign}"))
            if errors:
                raise ProblemError(422, "the revocation names what does not exist", errors)
            assert named is not None
            revoked = await link_sql.revoke_by_admin(
                conn, named.key, body.campaign, now, actor.name, body.reason
            )
        log.info("links_revoked", unit=named.key, campaign=body.campaign, revoked=len(revoked))
        return RevokeOut(
            unit=named.key,
            unit_name=named.name,
            campaign=body.campaign,
            revoked=len(revoked),
            links=[
                RevokedLink(
                    message_id=r.message_key,
                    campaign=r.campaign_id,
                    issued_at=r.issued_at,
                    expires_at=r.expires_at,
                )
                for r in revoked
            ],
        )

    return router


def _problem(field: str, message: str) -> dict[str, Any]:
    return {"index": None, "field": field, "message": message}
