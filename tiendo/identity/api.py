"""The admin API of identities (the aggregator serves it): issue, list, rotate, revoke."""

from collections.abc import Awaitable
from datetime import datetime
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from tiendo.dependencies import Pool
from tiendo.identity import manage, repository
from tiendo.identity.guard import Guard
from tiendo.identity.model import Identity, Role
from tiendo.unit_keys import KEY_PATTERN
from tiendo.web import problem_responses

NAME = r"^[A-Za-z0-9_.@-]{1,100}$"
T = TypeVar("T")


class IdentityIn(BaseModel):
    # (strict: 0 is not false, nor false a number of seconds)
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=NAME, description="a person or system, e.g. chief-00004")
    role: Literal["reader", "admin", "auditor"]
    units: list[Annotated[str, Field(pattern=KEY_PATTERN)]] = Field(
        [],
        max_length=1000,
        description="subtrees a reader sees: official codes, read on the tree in force now "
        "(refused when none is), or version keys (`00004@2025-07-01`), each exactly that version",
    )
    all_units: bool = Field(False, description="a reader who sees every unit (HQ)")


class RotateIn(BaseModel):
    # (strict: 0 is not false, nor false a number of seconds)
    model_config = ConfigDict(extra="forbid", strict=True)

    grace_seconds: float = Field(
        0.0, ge=0, le=30 * 86400, description="how long the old secret keeps working"
    )


class Rotated(BaseModel):
    name: str
    secret: str = Field(description="shown once; only its SHA-256 is stored")


class Issued(BaseModel):
    name: str
    secret: str = Field(description="shown once; only its SHA-256 is stored")
    units: list[str] | Literal["all"] = Field(
        description="the scope stored: the version key each unit named reads as"
    )
    unit_names: dict[str, str] = Field(description="each stored key's unit name")


class IdentityOut(BaseModel):
    name: str
    role: str
    state: str
    units: list[str] | Literal["all"]
    fingerprint: str = Field(description="first 12 hex digits of the secret's SHA-256")
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None
    old_secret_valid_until: datetime | None


def identity_routes(guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/v1/identities", tags=["identities"])
    Admin = Annotated[Identity, Depends(guard.require(Role.admin))]
    Name = Annotated[str, Path(pattern=NAME)]

    async def run_refusing(call: Awaitable[T]) -> T:
        try:
            return await call
        except manage.IdentityRefused as exc:
            raise HTTPException(exc.status, str(exc)) from exc

    @router.post("", status_code=201, responses=problem_responses(401, 403, 409, 422))
    async def create_identity(body: IdentityIn, pool: Pool, admin: Admin) -> Issued:
        async with pool.acquire() as conn:
            issued = await run_refusing(
                manage.create(
                    conn,
                    body.name,
                    Role(body.role),
                    body.units,
                    all_units=body.all_units,
                    actor=admin.name,
                )
            )
        return Issued(
            name=body.name,
            secret=issued.secret,
            units=list(issued.units) or "all",
            unit_names=issued.units,
        )

    @router.get("", responses=problem_responses(401, 403))
    async def list_identities(pool: Pool, _: Admin) -> list[IdentityOut]:
        async with pool.acquire() as conn:
            rows = await repository.listing(conn)
        return [
            IdentityOut(
                name=r.name,
                role=r.role,
                state=r.state,
                units=r.units or "all",
                fingerprint=r.fingerprint,
                created_at=r.created_at,
                rotated_at=r.rotated_at,
                revoked_at=r.revoked_at,
                old_secret_valid_until=r.old_secret_valid_until,
            )
            for r in rows
        ]

    @router.post("/{name}/rotate", responses=problem_responses(401, 403, 404, 422))
    async def rotate_identity(name: Name, body: RotateIn, pool: Pool, admin: Admin) -> Rotated:
        async with pool.acquire() as conn:
            secret = await run_refusing(
                manage.rotate(conn, name, grace_seconds=body.grace_seconds, actor=admin.name)
            )
        return Rotated(name=name, secret=secret)

    @router.delete("/{name}", status_code=204, responses=problem_responses(401, 403, 404))
    async def revoke_identity(name: Name, pool: Pool, admin: Admin) -> Response:
        async with pool.acquire() as conn:
            try:
                await manage.revoke(conn, name, actor=admin.name)
            except manage.IdentityRefused as exc:
                raise HTTPException(exc.status, str(exc)) from exc
        return Response(status_code=204)

    return router
