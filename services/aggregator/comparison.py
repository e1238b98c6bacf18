"""One campaign against an earlier one at the same day of each (docs/units-over-time.md,
"Comparisons over time"): "Mệnh lệnh 01 this year against Mệnh lệnh 01 (2023) on day 22".

Both are read by `tiendo.counting.as_of` (from the day rollups where the tree read is the
campaign's own, else from the history), on the tree of the first campaign at its moment:
the earlier campaign's figures are carried through the crosswalk onto today's units,
exactly for whole transfers and by shares for split ones; what a split without shares
left behind stays at the unit above (the root's figure includes it, no child's does, and
the reply says how much)."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, Field

from services.aggregator.recounting import refuse_while_recounting
from services.aggregator.repository import comparisons as comparisons_sql
from services.aggregator.repository import reference as reference_sql
from services.aggregator.repository import tree as tree_sql
from tiendo import counting
from tiendo.board.campaign import Campaign
from tiendo.board.isolation import CampaignIsolation
from tiendo.clock import Clock
from tiendo.database import Connection
from tiendo.dependencies import Pool
from tiendo.identity.guard import Guard
from tiendo.identity.model import Identity, Role
from tiendo.web import ProblemError, problem_responses

DAY = timedelta(days=1)
# how stale the boards' stored comparison may be (late reports from before its moment)
STORED_MAX_AGE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Moments:
    """The day compared and the moment of each campaign it stands for."""

    day: int
    at: datetime
    other_at: datetime


class DayNotReached(ValueError):
    """A `day` asked for that one of the two campaigns has not run (or did not last)."""


def whole_days(campaign: Campaign, now: datetime) -> int:
    """The whole days `campaign` has run by `now`, at most to its deadline."""
    return max(0, (min(now, campaign.deadline) - campaign.starts_at) // DAY)


def moments(campaign: Campaign, other: Campaign, day: int | None, now: datetime) -> Moments:
    """Day `day` of each campaign: `day` whole days after its start. A `day` either has not
    reached (past its deadline, or later than now) is `DayNotReached`: clamped, the two
    moments would be different days of each under one `day`. Without `day`: the last whole
    day the first campaign has run, the other's moment kept to its deadline and to now."""
    if day is not None:
        for c in (campaign, other):
            if day > (reached := whole_days(c, now)):
                ended = "lasted" if now >= c.deadline else "has run"
                raise DayNotReached(
                    f"must be at most {reached}: {c.id} {ended} {reached} whole days"
                )
    day = whole_days(campaign, now) if day is None else day
    at = min(campaign.starts_at + day * DAY, campaign.deadline, now)
    other_at = min(other.starts_at + day * DAY, other.deadline, now)
    return Moments(day, at, other_at)


class ComparedUnit(BaseModel):
    code: str = Field(description="the version's key")
    admin_code: str = Field(description="its official code")
    name: str
    level: int
    value: int = Field(description="the campaign's figure on its day")
    other_value: int = Field(
        description="the other campaign's figure on the same day of it, carried onto this "
        "campaign's tree through the crosswalk"
    )
    difference: int = Field(description="value - other_value")
    ratio: float | None = Field(description="value / other_value; null when other_value is 0")


class ComparisonOut(BaseModel):
    campaign: str
    other: str
    indicator: str
    day: int = Field(description="whole days since each campaign's start")
    at: datetime = Field(description="the campaign's moment (its tree is the one compared on)")
    other_at: datetime = Field(description="the other campaign's moment")
    unit: ComparedUnit = Field(description="the unit asked about, its whole subtree")
    children: list[ComparedUnit] = Field(description="its children in force at `at`")
    unallocated: int = Field(
        description="of the root's other_value, what split units without declared shares "
        "left at it (carried to no child)"
    )


async def compare(
    conn: Connection,
    campaign: Campaign,
    other: Campaign,
    indicator: str,
    root: tree_sql.VersionAt,
    children: list[tree_sql.VersionAt],
    when: Moments,
) -> ComparisonOut:
    """Both campaigns' figures of `root` and its `children` (the tree at `when.at`)."""
    codes = [root.key, *(c.key for c in children)]
    mine = await counting.as_of(conn, campaign.id, [indicator], codes, campaign.starts_at, when.at)
    theirs = await counting.as_of(
        conn,
        other.id,
        [indicator],
        codes,
        other.starts_at,
        max(when.other_at, other.starts_at),
        tree_at=max(when.at, campaign.starts_at),
    )

    def row(u: tree_sql.VersionAt) -> ComparedUnit:
        value = mine[indicator, u.key].value if (indicator, u.key) in mine else 0
        before = theirs[indicator, u.key].value if (indicator, u.key) in theirs else 0
        return ComparedUnit(
            code=u.key,
            admin_code=u.admin_code,
            name=u.name,
            level=u.level,
            value=value,
            other_value=before,
            difference=value - before,
            ratio=value / before if before else None,
        )

    top = row(root)
    rows = [row(c) for c in children]
    return ComparisonOut(
        campaign=campaign.id,
        other=other.id,
        indicator=indicator,
        day=when.day,
        at=when.at,
        other_at=when.other_at,
        unit=top,
        children=rows,
        # the other campaign's own figures at the root itself, if any, count here too
        unallocated=top.other_value - sum(r.other_value for r in rows) if rows else 0,
    )


async def store_comparisons(conn: Connection, now: datetime, isolation: CampaignIsolation) -> int:
    """The boards' comparisons (aggregator migration 013): every campaign against the one
    before it (the latest that ended by its start and shares an indicator), at the last
    whole day it has run, for the roots of its tree and their children; rewritten when
    older than `STORED_MAX_AGE`. Returns how many rows were written.

    Each campaign's comparison is stored apart through `isolation`: one that raises is left
    out (its earlier days' rows stay, its day is tried again next pass), and the others
    are stored as usual. A campaign whose figures for the boards fail is compared all the
    same: a comparison reads history (`as_of`), not the live judging that failed."""
    campaigns = {c.id: c for c in await reference_sql.campaigns(conn)}
    due: dict[str, tuple[comparisons_sql.Pair, Campaign, Campaign]] = {}
    for pair in await comparisons_sql.pairs(conn):
        campaign, other = campaigns.get(pair.campaign_id), campaigns.get(pair.other_id)
        if campaign is None or other is None or now < campaign.starts_at + DAY:
            continue
        if not (campaign.judgeable() and other.judgeable()):
            continue  # a campaign whose time zone is gone is left out everywhere
        due[campaign.id] = (pair, campaign, other)

    async def store(campaign: Campaign) -> int:
        pair, _, other = due[campaign.id]
        return await _store_pair(conn, pair, campaign, other, now)

    written = await isolation.each(conn, [c for _, c, _ in due.values()], store)
    return sum(written.values())


async def _store_pair(
    conn: Connection,
    pair: comparisons_sql.Pair,
    campaign: Campaign,
    other: Campaign,
    now: datetime,
) -> int:
    """One campaign's comparison with its earlier one, each shared indicator's rows not
    written lately; how many rows were written."""
    when = moments(campaign, other, None, now)
    tree_at = max(when.at, campaign.starts_at)
    written = 0
    for indicator in pair.shared:
        if await comparisons_sql.is_fresh(conn, pair, indicator, when.day, STORED_MAX_AGE, now):
            continue
        rows: list[comparisons_sql.StoredRow] = []
        for code in await comparisons_sql.roots_at(conn, tree_at):
            root = await tree_sql.version_at(conn, code, tree_at)
            if root is None:
                continue
            children = await tree_sql.children_at(conn, code, tree_at)
            out = await compare(conn, campaign, other, indicator, root, children, when)
            rows.append(
                comparisons_sql.StoredRow(
                    out.unit.code,
                    out.unit.level,
                    out.unit.value,
                    out.unit.other_value,
                    out.unallocated,
                )
            )
            rows.extend(
                comparisons_sql.StoredRow(c.code, c.level, c.value, c.other_value, 0)
                for c in out.children
            )
        await comparisons_sql.store(conn, pair, indicator, when.day, rows, now)
        written += len(rows)
    return written


CampaignPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="campaign id")]


def comparison_routes(
    access: Guard, clock: Clock, refuse_unusable: Callable[[str], None]
) -> APIRouter:
    """`refuse_unusable`: raises for a campaign kept out of counting (the app's guard)."""
    router = APIRouter()
    Reader = Annotated[Identity, Depends(access.require(Role.reader, Role.admin))]

    @router.get(
        "/v1/campaigns/{campaign_id}/compare/{other_id}",
        tags=["progress"],
        response_model=ComparisonOut,
        summary="A campaign against an earlier one at the same day of each, on today's units",
        description=(
            "Both campaigns' figures for one indicator at day `day` of each (whole days "
            "after its start; default: the last whole day the campaign has run), for a "
            "unit and its children in force at the campaign's moment. The other campaign's "
            "figures are carried through the crosswalk onto that tree: whole transfers "
            "exactly, splits by declared shares; what splits without shares left is "
            "`unallocated` at the unit above (docs/units-over-time.md). A `day` either "
            "campaign has not reached (more whole days than it has run so far, or past "
            "its deadline) is refused with 422 naming `day`: the two would be compared "
            "at different days of each."
        ),
        responses=problem_responses(404, 409, 422, 503),
    )
    async def get_comparison(
        campaign_id: CampaignPath,
        other_id: CampaignPath,
        pool: Pool,
        who: Reader,
        indicator: Annotated[str, Query(pattern=r"^[a-z0-9_]{1,48}$")],
        unit: Annotated[
            str,
            Query(
                pattern=r"^[A-Za-z0-9_.-]{1,32}(@[0-9]{4}-[0-9]{2}-[0-9]{2})?$",
                description="a key or an official code, read at the campaign's moment",
            ),
        ],
        day: Annotated[int | None, Query(ge=0, le=3660)] = None,
    ) -> ComparisonOut:
        async with pool.acquire() as conn:
            campaign = await reference_sql.campaign(conn, campaign_id)
            other = await reference_sql.campaign(conn, other_id)
            for cid, found in ((campaign_id, campaign), (other_id, other)):
                if found is None:
                    raise HTTPException(404, f"no campaign {cid}")
            assert campaign is not None
            assert other is not None
            for cid in (campaign_id, other_id):
                refuse_unusable(cid)
            await refuse_while_recounting(conn)
            for c in (campaign, other):
                if indicator not in c.indicators:
                    raise HTTPException(422, f"campaign {c.id} does not count {indicator}")
            try:
                when = moments(campaign, other, day, clock.now())
            except DayNotReached as exc:
                raise ProblemError(
                    422,
                    f"day {exc}",
                    [{"index": None, "field": "day", "message": str(exc)}],
                    slug="invalid-parameters",
                ) from None
            tree_at = max(when.at, campaign.starts_at)
            root = await tree_sql.version_at(conn, unit, tree_at)
            # outside the caller's scope reads as absent: no existence leak
            if root is None or not who.sees(root.key, root.ancestors):
                raise HTTPException(404, f"no unit {unit} at {tree_at.isoformat()}")
            children = await tree_sql.children_at(conn, root.key, tree_at)
            compared = await compare(conn, campaign, other, indicator, root, children, when)
            await refuse_while_recounting(conn)  # (again once read: a reset may have come)
            return compared

    return router
