"""A cut-over passing a campaign (docs/units-over-time.md "Campaigns across a change"): its
live counters are kept on the tree in force at min(max(now, start), deadline); when that
moment crosses a tree boundary, or the tree itself changes, the campaign is re-planned and
its values recounted onto the new tree, so live always equals `as_of` now."""

from collections.abc import Iterable
from datetime import datetime

from services.aggregator import admin
from services.aggregator.repository import apply as apply_sql
from services.aggregator.repository import reference as reference_sql
from tiendo.board.campaign import Campaign, moving
from tiendo.database import Connection
from tiendo.logs import get_logger

log = get_logger(__name__)


async def replan_for_tree(conn: Connection, campaign_id: str, now: datetime | None = None) -> bool:
    """Move one campaign onto the tree it reports on at `now` (None: the database's
    clock) if it is not there yet; True if it moved. Takes the re-plan lock: no batch
    applies meanwhile. The caller owns the transaction."""
    await conn.execute(apply_sql.LOCK_REPLAN)
    if campaign_id not in await reference_sql.tree_passed(conn, now):
        return False
    await admin.replan(conn, campaign_id, now=now)
    log.info("campaign_tree_moved", campaign=campaign_id)
    return True


async def replan_passed(conn: Connection, now: datetime | None = None) -> list[str]:
    """Every campaign a tree boundary has passed since it was planned, moved onto its tree;
    the campaigns moved. Cheap when none has: one reading of the campaigns, no lock."""
    return [
        c for c in await reference_sql.tree_passed(conn, now) if await replan_for_tree(conn, c, now)
    ]


async def after_tree_change(conn: Connection, now: datetime | None = None) -> None:
    """What a tree change (a version loaded, the crosswalk amended) needs of the counting:
    where each version lands on each moment's tree, again, and every campaign re-planned
    onto its tree (new versions get their rows, carried figures land anew). The loader
    calls it in its transaction, after the versions and the crosswalk are written."""
    await conn.execute(apply_sql.LOCK_REPLAN)
    await reference_sql.refresh_unit_anchors(conn)
    for campaign_id in await reference_sql.campaign_ids(conn):
        await admin.replan(conn, campaign_id, now=now)


def next_move(campaigns: Iterable[Campaign], now: datetime) -> datetime | None:
    """The first moment after `now` at which a campaign's live counters leave the tree it
    reports on: when `tree_check` should look again, not a period later."""
    return min(filter(None, (c.leaves_tree(now) for c in campaigns)), default=None)


async def replan_and_next(conn: Connection, now: datetime) -> datetime | None:
    """`replan_passed`, then `next_move` of the campaigns as they are now planned: one
    reading of the campaigns when none has passed a boundary (every beat but a cut-over's)."""
    campaigns = await reference_sql.campaigns(conn)
    if moving(campaigns, now):
        await replan_passed(conn, now)
        campaigns = await reference_sql.campaigns(conn)
    return next_move(campaigns, now)
