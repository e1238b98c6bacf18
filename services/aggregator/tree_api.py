"""The routes of the tree's versions: loading a tree version (admin) and reading what an
official code meant over time (readers)."""

from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, TypeVar

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field

from services.aggregator.repository import tree as tree_sql
from services.aggregator.tree_load import TreeVersionIn, TreeVersionOut, load_tree_version
from tiendo.clock import Clock
from tiendo.database import Connection
from tiendo.dependencies import Pool
from tiendo.identity.guard import Guard
from tiendo.identity.model import Identity, Role
from tiendo.moments import Day
from tiendo.web import problem_responses

T = TypeVar("T")
AdminCall = Callable[[asyncpg.Pool, Callable[[Connection], Awaitable[T]]], Awaitable[T]]


class TransferOut(BaseModel):
    old_key: str
    old_code: str
    old_name: str
    new_key: str
    new_code: str
    new_name: str
    transfer: str = Field(description="whole, or part (split over several units)")
    share: Decimal | None = Field(description="the part's share; null: not known")
    at: datetime = Field(description="the cut-over")


class VersionOut(BaseModel):
    key: str = Field(description="the code every table names this version by")
    admin_code: str = Field(description="the official code")
    name: str
    type: str
    level: int
    parent: str | None = Field(description="the parent version's key")
    valid_from: datetime | None = Field(description="null: since before anything known")
    valid_to: datetime | None = Field(description="null: in force")
    grace_until: datetime | None = Field(
        description="the retired code is accepted for events until then (whole transfers)"
    )
    went_to: list[TransferOut]
    came_from: list[TransferOut]


def tree_routes(access: Guard, admin_call: "AdminCall[TreeVersionOut]", clock: Clock) -> APIRouter:
    router = APIRouter()
    Reader = Annotated[Identity, Depends(access.require(Role.reader, Role.admin))]
    Admin = Annotated[Identity, Depends(access.require(Role.admin))]

    @router.put(
        "/v1/admin/tree-versions/{valid_from}",
        tags=["admin"],
        response_model=TreeVersionOut,
        summary="Load the whole unit tree in force from a day, with its crosswalk",
        description=(
            "The tree in force from local midnight (Asia/Ho_Chi_Minh) of `valid_from`. A "
            "unit whose code, name, type, level and parent are those of the day before "
            "continues its version; any other opens a new one (keyed `<code>@<day>` when "
            "the code was used before); every version the tree does not continue is "
            "closed, and the crosswalk says where its people went. Refused whole (422, "
            "every bad row: `field` units or crosswalk, `index` the row) for an unknown "
            "code, a closed unit without a crosswalk row, shares that do not sum to 1 or "
            "mix given and empty, a whole transfer to several units, a cycle or missing "
            "parent, or a day not after the latest loaded one."
        ),
        responses=problem_responses(401, 422),
    )
    async def put_tree_version(
        valid_from: Annotated[Day, Path(description="the cut-over day, YYYY-MM-DD")],
        body: TreeVersionIn,
        pool: Pool,
        who: Admin,
    ) -> TreeVersionOut:
        return await admin_call(
            pool,
            lambda conn: load_tree_version(conn, valid_from, body, who.name, now=clock.now()),
        )

    @router.get(
        "/v1/units/{code}/versions",
        tags=["units"],
        response_model=list[VersionOut],
        summary="Every version an official code has named, with periods and transfers",
        responses=problem_responses(404, 422),
    )
    async def get_versions(
        code: Annotated[
            str,
            Path(
                pattern=r"^[A-Za-z0-9_.-]{1,32}(@[0-9]{4}-[0-9]{2}-[0-9]{2})?$",
                description="an official code or a version key",
            ),
        ],
        pool: Pool,
        who: Reader,
    ) -> list[VersionOut]:
        async with pool.acquire() as conn:
            versions = [
                v
                for v in await tree_sql.versions_of(conn, code)
                # a scope holds version keys (docs/access.md): the code's other versions
                # are other units, however alike their official code
                if who.sees(v.key, v.ancestors)
            ]
            if not versions:
                # outside the caller's scope reads as absent: no existence leak
                raise HTTPException(404, f"no unit {code}")
            transfers = await tree_sql.transfers_of(conn, [v.key for v in versions])
        return [
            VersionOut(
                key=v.key,
                admin_code=v.admin_code,
                name=v.name,
                type=v.type,
                level=v.level,
                parent=v.parent_key,
                valid_from=v.valid_from,
                valid_to=v.valid_to,
                grace_until=v.grace_until,
                went_to=[_transfer(t) for t in transfers if t.old_key == v.key],
                came_from=[_transfer(t) for t in transfers if t.new_key == v.key],
            )
            for v in versions
        ]

    return router


def _transfer(t: tree_sql.TransferRow) -> TransferOut:
    return TransferOut(
        old_key=t.old_key,
        old_code=t.old_code,
        old_name=t.old_name,
        new_key=t.new_key,
        new_code=t.new_code,
        new_name=t.new_name,
        transfer=t.transfer,
        share=t.share,
        at=t.at,
    )
