"""Loading a tree version through the admin API (and so the CLI): the rows as sent, the
pure check (`tree_versions.plan_version`), the write, the audit row, then the hook every
change of the tree calls (`repository.tree.after_tree_change`)."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from services.aggregator import cutover
from services.aggregator.admin import (
    ReferenceError,
    UnitPlace,
    left_out_details,
    refuse_parent_loops,
)
from services.aggregator.repository import apply as apply_sql
from services.aggregator.repository import reference as reference_sql
from services.aggregator.repository import tree as tree_sql
from services.aggregator.tree_versions import (
    DEFAULT_GRACE_DAYS,
    CrosswalkRow,
    TreeRow,
    VersionPlan,
    plan_version,
)
from services.aggregator.validation import Problem
from tiendo import audit
from tiendo.database import Connection
from tiendo.unit_keys import CODE_PATTERN

# The days a tree version may be loaded for: tiendo keeps nothing older than this, and a
# tree is published months, not years, ahead of its day.
EARLIEST_DAY = date(2000, 1, 1)
LATEST_AHEAD_DAYS = 366


class TreeUnitIn(UnitPlace):
    """A unit of the tree in force from the version's day, by its official code (a tree
    version carries no chiefs: contacts belong to the notifier)."""


class CrosswalkIn(BaseModel):
    """Where an old unit's people went: `old_code` as the day before the cut-over knew it,
    `new_code` in the new tree."""

    model_config = ConfigDict(extra="forbid")

    old_code: str = Field(pattern=CODE_PATTERN)
    new_code: str = Field(pattern=CODE_PATTERN)
    transfer: Literal["whole", "part"]
    share: Decimal | None = Field(
        None, gt=0, le=1, description="part of the old unit's people; all or none of a split"
    )


class TreeVersionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    units: list[TreeUnitIn] = Field(
        max_length=20_000, description="the whole tree in force from the day"
    )
    crosswalk: list[CrosswalkIn] = Field(
        default_factory=list,
        max_length=100_000,
        description="a row for every unit that is not continued (a renamed or re-parented "
        "unit that keeps its code needs none)",
    )
    grace_days: StrictInt = Field(
        DEFAULT_GRACE_DAYS,
        ge=0,
        le=3650,
        description="how long a retired code that went whole into one unit is still "
        "accepted for events, counted to that unit",
    )


class TreeVersionOut(BaseModel):
    valid_from: date
    continued: int
    closed: int
    opened: int
    transfers: int
    campaigns_not_replanned: dict[str, str] = Field(
        default_factory=dict,
        description="campaigns the load did not re-plan, with why: unusable ones (as "
        "/readyz names them) and those whose re-plan failed; their figures stay as they "
        "were until they are fixed (docs/units-over-time.md)",
    )


async def load_tree_version(
    conn: Connection, day: date, body: TreeVersionIn, actor: str, *, now: datetime | None = None
) -> TreeVersionOut:
    """Load `body` as the tree in force from `day`, or raise ReferenceError listing every
    bad row (`field`: units or crosswalk; `index`: the row in that list). `now`: the
    caller's clock, which the campaigns are re-planned at (None: the database's)."""
    # A cut-over is loaded for good (trees load in day order, and nothing unloads one): a
    # mistyped year would block every real one after it.
    today = (now or datetime.now(UTC)).date()
    if not EARLIEST_DAY <= day <= today + timedelta(days=LATEST_AHEAD_DAYS):
        raise ReferenceError(
            [
                Problem(
                    "valid_from",
                    f"{day} is outside {EARLIEST_DAY} .. {LATEST_AHEAD_DAYS} days from today",
                )
            ]
        )
    # no batch applies while the tree moves under it
    await conn.execute(apply_sql.LOCK_REPLAN)
    rows = [
        TreeRow(i, u.code, u.name, u.type, u.level, u.parent_code) for i, u in enumerate(body.units)
    ]
    crosswalk = [
        CrosswalkRow(i, c.old_code, c.new_code, c.transfer, c.share)
        for i, c in enumerate(body.crosswalk)
    ]
    plan = plan_version(await tree_sql.versions(conn), rows, crosswalk, day, body.grace_days)
    if isinstance(plan, list):
        raise ReferenceError([Problem(e.source, e.message, e.line) for e in plan])
    await tree_sql.write_version(conn, plan)
    # (`plan_version` refuses a loop among the rows; this is the stored tree's, which the
    # check below would miss: a loop's units keep ancestors that may still fit their level)
    await refuse_parent_loops(conn, {}, "units")
    if await reference_sql.check_tree(conn) or await tree_sql.parents_out_of_period(conn):
        raise ReferenceError(
            [Problem("units", "the versions would not form one tree at every moment")]
        )
    moved = await tree_sql.after_tree_change(conn)
    left_out = await cutover.after_tree_change(conn, now, events_moved=moved)
    await audit.record(
        conn,
        actor=actor,
        action="units.version",
        subject=day.isoformat(),
        # (any moved: every campaign was recounted, which the load's duration shows)
        details={**_summary(plan), "events_moved": moved, **left_out_details(left_out)},
    )
    return TreeVersionOut(
        valid_from=day,
        continued=len(plan.continued),
        closed=len(plan.closed),
        opened=len(plan.opened),
        transfers=len(plan.transfers),
        campaigns_not_replanned=left_out,
    )


def _summary(plan: VersionPlan) -> dict[str, object]:
    return {
        "at": plan.at,
        "continued": len(plan.continued),
        "closed": [c.key for c in plan.closed][:1000],
        "opened": [n.key for n in plan.opened][:1000],
        "transfers": len(plan.transfers),
    }
