"""The auditor's read of the audit log (the notifier serves it: it already reads the log,
and the aggregator's role may not)."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from tiendo import audit
from tiendo.database import BIGINT_MAX
from tiendo.dependencies import Pool
from tiendo.identity.guard import Guard
from tiendo.identity.model import Identity, Role
from tiendo.web import problem_responses


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]


def audit_routes(guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/v1/audit", tags=["audit"])
    Auditor = Annotated[Identity, Depends(guard.require(Role.auditor))]

    @router.get(
        "",
        summary="Who changed what, when: newest first",
        responses=problem_responses(401, 403),
    )
    async def list_audit(
        pool: Pool,
        _: Auditor,
        before: Annotated[
            int | None, Query(ge=1, le=BIGINT_MAX, description="ids below this (paging)")
        ] = None,
        actor: Annotated[str | None, Query(max_length=100)] = None,
        action: Annotated[
            str | None, Query(max_length=64, description="prefix, e.g. identity. or units")
        ] = None,
        subject: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[AuditEntry]:
        async with pool.acquire() as conn:
            rows = await audit.entries(
                conn, before=before, actor=actor, action=action, subject=subject, limit=limit
            )
        return [AuditEntry(**r) for r in rows]

    return router
