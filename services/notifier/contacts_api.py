"""The notifier's admin API of chiefs' contacts: read and replace one unit's, or replace many
units' at once (what `tiendo notifier import contacts` sends). Every change is audited, and
the next evaluation pass takes it in (docs/admin.md, "Chiefs' contacts"). A contact replaced
or removed withdraws, in the same transaction, the chief's links that were sent to the old
address (docs/briefing.md, "Withdrawn links"): the link is the authority to act as the
unit's chief, and whoever reads that address now may not be the chief.

A unit is named as everywhere (docs/units-over-time.md): an official code means its version
in force now (after 1 July 2025 `00004` is Phường Ba Đình, `00004@2025-07-01`), a later
version's key exactly that version; the answer says which (`unit`, `unit_name`)."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path

from services.notifier.contacts import (
    UNIT_PATTERN,
    UnitContactsIn,
    UnitContactsItem,
    UnitContactsOut,
    unknown_channels,
)
from services.notifier.repository import links as link_sql
from services.notifier.repository import reference as reference_sql
from tiendo.board.repository import version_named
from tiendo.clock import Clock
from tiendo.database import Connection
from tiendo.dependencies import Pool
from tiendo.identity.guard import Guard
from tiendo.identity.model import Identity, Role
from tiendo.unit_keys import admin_code_of
from tiendo.web import ProblemError, problem_responses

UNAUTHORIZED = "no credential, or an unknown one"
BAD_BODY = (
    "a bad body: a channel the notifier does not know, an address not in its channel's form, "
    "a language other than `vi`/`en`, a channel twice for one unit"
)
NOT_IN_FORCE = "an official code none of whose versions is in force now (retired, or not yet)"
WITHDRAWS = (
    "A contact replaced or removed withdraws the chief's links sent to its old address (the "
    "link page answers 410 and takes nothing more; acknowledgements and explanations made "
    "through them stay, snoozes end), audited as `links.revoke`."
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


async def _replace(
    conn: Connection, unit: str, body: UnitContactsIn, actor: str, at: datetime
) -> None:
    contacts = [c.contact() for c in body.contacts]
    await reference_sql.replace_contacts(conn, unit, body.chief_name, contacts, actor)
    await link_sql.revoke_to_former_contacts(conn, [unit], at, actor)


@dataclass(frozen=True, slots=True)
class NoVersion:
    """Why a unit's name names no version to set; `known`: the tree has it (a retired
    code), else it is unknown."""

    message: str
    known: bool


async def versions_to_set(
    conn: Connection, names: Sequence[str], now: datetime
) -> list[str | NoVersion]:
    """For each name, the key of the version whose chief it sets at `now`, or why none.
    Read as every service reads a unit's name (`version_named`, through the notifier's own
    view of the units, as silences are): a later version's key names exactly its version;
    an official code its version in force now, and none when none is (a retired code, or
    one not in force yet), as a reader's scope and the tree's import read a code: a chief
    set on a version the code no longer means would never hear of the unit it means today."""
    named = {name: await version_named(conn, name, now) for name in dict.fromkeys(names)}
    current = await reference_sql.in_force(
        conn, [v.key for v in named.values() if v is not None], now
    )
    out: list[str | NoVersion] = []
    for name in names:
        version = named[name]
        if version is None:
            out.append(NoVersion(f"no unit {name}", known=False))
        elif admin_code_of(name) != name or version.key in current:
            out.append(version.key)
        else:
            # a code's first version is keyed by the bare code: once closed, nothing names it
            out.append(
                NoVersion(
                    f"official code {name} names no unit in force at {now.isoformat()}: "
                    f"{version.name} (key {version.key}) is not; a later version of a reused "
                    "code is named by its key, CODE@DAY",
                    known=True,
                )
            )
    return out


def contacts_router(access: Guard, sent_on: Collection[str], clock: Clock) -> APIRouter:
    """The routes; `sent_on`: channels this notifier sends on besides the built-in ones;
    `clock`: the moment an official code is read at."""
    router = APIRouter(tags=["contacts"])
    # contacts are personal data: admins only, reads included
    Admin = Annotated[Identity, Depends(access.require(Role.admin))]
    Unit = Annotated[
        str,
        Path(
            pattern=UNIT_PATTERN,
            description="an official code (its version in force now), or a version's key",
        ),
    ]

    @router.get(
        "/v1/contacts/{unit}",
        summary="A unit's chief and contacts",
        description="Personal data: an admin identity's token is required to read it too.",
        responses=_responses(_401=UNAUTHORIZED, _404="no such unit in the tree"),
    )
    async def get_contacts(unit: Unit, pool: Pool, _: Admin) -> UnitContactsOut:
        async with pool.acquire() as conn:
            # read as the read API reads: a retired code is the version it keys
            named = await version_named(conn, unit, clock.now())
            found = await reference_sql.unit(conn, named.key) if named is not None else None
        if found is None:
            raise HTTPException(404, f"no unit {unit}")
        return UnitContactsOut.of(found)

    @router.put(
        "/v1/contacts/{unit}",
        summary="Replace a unit's chief and contacts",
        description=" ".join(
            (
                "The unit's contacts become exactly those sent (a channel left out is removed; "
                "an empty list removes them all), and its chief's name the one sent (null: "
                "none). A contact's `language` chooses the language of what is sent there.",
                WITHDRAWS,
            )
        ),
        responses=_responses(
            _401=UNAUTHORIZED,
            _404="no such unit in the tree",
            _422=f"{BAD_BODY}; {NOT_IN_FORCE}",
        ),
    )
    async def put_contacts(
        unit: Unit, body: UnitContactsIn, pool: Pool, actor: Admin
    ) -> UnitContactsOut:
        if errors := _channel_problems([body], sent_on, indexed=False):
            raise ProblemError(422, "the notifier does not know these channels", errors)
        now = clock.now()
        async with pool.acquire() as conn, conn.transaction():
            (named,) = await versions_to_set(conn, [unit], now)
            if isinstance(named, NoVersion):
                if not named.known:
                    raise HTTPException(404, named.message)
                problem = {"index": None, "field": "unit", "message": named.message}
                raise ProblemError(422, "no unit to set", [problem])
            await _replace(conn, named, body, actor.name, now)
            found = await reference_sql.unit(conn, named)
        assert found is not None  # named in this transaction
        return UnitContactsOut.of(found)

    @router.put(
        "/v1/contacts",
        summary="Replace the chiefs and contacts of many units at once",
        description=" ".join(
            (
                "All or nothing: every listed unit's contacts are replaced as by "
                "`PUT /v1/contacts/{unit}` (a unit named as there), or none when any item is "
                "bad (every problem is listed, `index` naming the item). Units not listed are "
                "left as they are.",
                WITHDRAWS,
            )
        ),
        responses=_responses(
            _401=UNAUTHORIZED,
            _422=f"{BAD_BODY}; a unit unknown to the tree or listed twice (by code or key); "
            + NOT_IN_FORCE,
        ),
    )
    async def put_many_contacts(
        body: Annotated[list[UnitContactsItem], Body(max_length=100_000)],
        pool: Pool,
        actor: Admin,
    ) -> dict[str, int]:
        errors = _channel_problems(body, sent_on, indexed=True)
        now = clock.now()
        async with pool.acquire() as conn, conn.transaction():
            named = await versions_to_set(conn, [b.unit for b in body], now)
            first: dict[str, int] = {}
            for i, (b, n) in enumerate(zip(body, named, strict=True)):
                if isinstance(n, NoVersion):
                    errors.append({"index": i, "field": "unit", "message": n.message})
                elif first.setdefault(n, i) != i:
                    # `00004` and `00004@2025-07-01` are one unit after the cut-over
                    message = f"unit {b.unit} ({n}) repeats item {first[n]}"
                    errors.append({"index": i, "field": "unit", "message": message})
            if errors:
                errors.sort(key=lambda e: e["index"])
                raise ProblemError(422, "nothing was changed", errors)
            for item, n in zip(body, named, strict=True):
                assert not isinstance(n, NoVersion)  # refused above
                await _replace(conn, n, item, actor.name, now)
        return {"units": len(body)}

    return router
