"""The notifier's admin API of chiefs' contacts: read and replace one unit's, or replace many
units' at once (what `tiendo notifier import contacts` sends). Every change is audited, and
the next evaluation pass takes it in (docs/admin.md, "Chiefs' contacts")."""

from collections.abc import Collection, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path

from services.notifier.contacts import (
    UNIT_PATTERN,
    UnitContactsIn,
    UnitContactsItem,
    UnitContactsOut,
    unknown_channels,
)
from services.notifier.repository import reference as reference_sql
from tiendo.database import Connection
from tiendo.dependencies import Pool
from tiendo.identity.guard import Guard
from tiendo.identity.model import Identity, Role
from tiendo.web import ProblemError, problem_responses

UNAUTHORIZED = "no credential, or an unknown one"
BAD_BODY = (
    "a bad body: a channel the notifier does not know, an address not in its channel's form, "
    "a language other than `vi`/`en`, a channel twice for one unit"
)


def _responses(**described: str) -> dict[int | str, dict[str, Any]]:
    """problem+json responses, each with what it means here (`_404="…"`)."""
    out = problem_responses(*(int(s.lstrip("_")) for s in described))
    for status, description in described.items():
        out[int(status.lstrip("_"))]["description"] = description
    return out


def _channel_problems(
    bodies: Sequence[UnitContactsIn], sent_on: Collection[str], *, indexed: bool
) -> list[dict[str, Any]]:
    return [
        {
            "index": index if indexed else None,
            "field": f"contacts.{position}.channel",
            "message": f"unknown channel {channel}",
        }
        for index, body in enumerate(bodies)
        for position, channel in unknown_channels(body, sent_on)
    ]


async def _replace(conn: Connection, unit: str, body: UnitContactsIn, actor: str) -> None:
    contacts = [c.contact() for c in body.contacts]
    await reference_sql.replace_contacts(conn, unit, body.chief_name, contacts, actor)


def contacts_router(access: Guard, sent_on: Collection[str]) -> APIRouter:
    """The routes; `sent_on`: channels this notifier sends on besides the built-in ones."""
    router = APIRouter(tags=["contacts"])
    # contacts are personal data: admins only, reads included
    Admin = Annotated[Identity, Depends(access.require(Role.admin))]
    Unit = Annotated[str, Path(pattern=UNIT_PATTERN, description="the unit's code")]

    @router.get(
        "/v1/contacts/{unit}",
        summary="A unit's chief and contacts",
        description="Personal data: the admin token is required to read it too.",
        responses=_responses(_401=UNAUTHORIZED, _404="no such unit in the tree"),
    )
    async def get_contacts(unit: Unit, pool: Pool, _: Admin) -> UnitContactsOut:
        async with pool.acquire() as conn:
            found = await reference_sql.unit(conn, unit)
        if found is None:
            raise HTTPException(404, f"no unit {unit}")
        return UnitContactsOut.of(found)

    @router.put(
        "/v1/contacts/{unit}",
        summary="Replace a unit's chief and contacts",
        description=(
            "The unit's contacts become exactly those sent (a channel left out is removed; "
            "an empty list removes them all), and its chief's name the one sent (null: "
            "none). A contact's `language` chooses the language of what is sent there."
        ),
        responses=_responses(_401=UNAUTHORIZED, _404="no such unit in the tree", _422=BAD_BODY),
    )
    async def put_contacts(
        unit: Unit, body: UnitContactsIn, pool: Pool, actor: Admin
    ) -> UnitContactsOut:
        if errors := _channel_problems([body], sent_on, indexed=False):
            raise ProblemError(422, "the notifier does not know these channels", errors)
        async with pool.acquire() as conn, conn.transaction():
            if await reference_sql.unit(conn, unit) is None:
                raise HTTPException(404, f"no unit {unit}")
            await _replace(conn, unit, body, actor.name)
            found = await reference_sql.unit(conn, unit)
        assert found is not None  # checked in this transaction
        return UnitContactsOut.of(found)

    @router.put(
        "/v1/contacts",
        summary="Replace the chiefs and contacts of many units at once",
        description=(
            "All or nothing: every listed unit's contacts are replaced as by "
            "`PUT /v1/contacts/{unit}`, or none when any item is bad (every problem is "
            "listed, `index` naming the item). Units not listed are left as they are."
        ),
        responses=_responses(
            _401=UNAUTHORIZED, _422=BAD_BODY + "; a unit unknown to the tree or listed twice"
        ),
    )
    async def put_many_contacts(
        body: Annotated[list[UnitContactsItem], Body(max_length=100_000)],
        pool: Pool,
        actor: Admin,
    ) -> dict[str, int]:
        first: dict[str, int] = {}
        errors = _channel_problems(body, sent_on, indexed=True) + [
            {"index": i, "field": "unit", "message": f"unit {b.unit} repeats item {first[b.unit]}"}
            for i, b in enumerate(body)
            if first.setdefault(b.unit, i) != i
        ]
        async with pool.acquire() as conn, conn.transaction():
            known = await reference_sql.recipients(conn, [b.unit for b in body])
            errors += [
                {"index": i, "field": "unit", "message": f"no unit {b.unit}"}
                for i, b in enumerate(body)
                if b.unit not in known
            ]
            if errors:
                errors.sort(key=lambda e: e["index"])
                raise ProblemError(422, "nothing was changed", errors)
            for item in body:
                await _replace(conn, item.unit, item, actor.name)
        return {"units": len(body)}

    return router
