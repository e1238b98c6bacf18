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
from tiendo.board.isolation import CampaignIsolation
from tiendo.database import Connection
from tiendo.logs import get_logger

log = get_logger(__name__)


async def replan_for_tree(conn: Connection, campaign_id: str, now: datetime | None = None) -> bool:
    """Move one campaign onto the tree it reports on at `now` (None: the database's
    clock) if it is not there yet; True if it moved. Takes the re-plan lock: no batch
    applies meanwhile. The caller owns the transaction."""
    await conn.execute(apply_sql.LOCK_REPLAN)
    if campaign_id not in {c.id for c in await reference_sql.tree_passed(conn, now)}:
        return False
    await admin.replan(conn, campaign_id, now=now)
    log.info("campaign_tree_moved", campaign=campaign_id)
    return True


async def replan_passed(
    conn: Connection,
    now: datetime | None = None,
    isolation: CampaignIsolation | None = None,
    *,
    retry: bool = True,
) -> list[str]:
    """Every campaign a tree boundary has passed since it was planned, moved onto its tree;
    the campaigns moved. Cheap when none has: one reading of the campaigns, no lock.

    With `isolation`, each campaign is moved apart: one whose move raises stays where it
    is (its live reads are `as_of` now, the notifier waits for it, the boards leave it
    out) while the others move. Without, the first failure fails them all (a test's or an
    admin's single move). `retry`: try the failing ones again too (a whole pass, which
    also forgets those that no longer need moving); else they are left as they are: each
    try holds the counters' lock, and the consumer's batches wait, until it fails."""
    passed = await reference_sql.tree_passed(conn, now)
    if isolation is None:
        return [c.id for c in passed if await replan_for_tree(conn, c.id, now)]
    if not retry:
        passed = [c for c in passed if c.id not in isolation.failing]

    async def move(campaign: Campaign) -> bool:
        return await replan_for_tree(conn, campaign.id, now)

    # none passed: a whole pass still forgets what failed before (moved since, or deleted)
    moved = await isolation.each(conn, passed, move, whole=retry)
    return sorted(c for c, did in moved.items() if did)


async def after_tree_change(
    conn: Connection, now: datetime | None = None, *, events_moved: int = 0
) -> dict[str, str]:
    """What a tree change (a version loaded, the crosswalk amended) needs of the counting:
    where each version lands on each moment's tree, again, and every campaign re-planned
    onto its tree (new versions get their rows, carried figures land anew), each apart
    (`admin.replan_every`): an unusable campaign, or one whose re-plan fails, is left
    as it was and returned with why, and the change goes ahead for the others. The loader
    calls it in its transaction, after the versions and the crosswalk are written and the
    stored events re-attributed (`repository.tree.after_tree_change`, which returns
    `events_moved`). A campaign left out whose tree the change passed is moved by
    `tree_check` later (and flagged as failing to move while it cannot)."""
    await conn.execute(apply_sql.LOCK_REPLAN)
    await reference_sql.refresh_unit_anchors(conn)
    # An event moved to another version (a tree loaded after its day) leaves the own
    # columns and day counts it was applied to: only a recount from the stored events
    # takes it off its old version (a snapshot stops standing for it, a last report goes).
    # Every campaign, not only those whose windows and indicators the moved events meet:
    # a late load is rare, and one rule with no second reading of the events to get wrong.
    return await admin.replan_every(conn, now=now, recount=events_moved > 0)


def next_move(campaigns: Iterable[Campaign], now: datetime) -> datetime | None:
    """The first moment after `now` at which a campaign's live counters leave the tree it
    reports on: when `tree_check` should look again, not a period later."""
    return min(filter(None, (c.leaves_tree(now) for c in campaigns)), default=None)


async def replan_and_next(
    conn: Connection,
    now: datetime,
    isolation: CampaignIsolation | None = None,
    *,
    retry: bool = True,
) -> datetime | None:
    """`replan_passed`, then `next_move` of the campaigns as they are now planned: one
    reading of the campaigns when none has passed a boundary (every beat but a cut-over's)
    and none is failing to move."""
    campaigns = await reference_sql.campaigns(conn)
    failing = isolation is not None and retry and isolation.failing
    if moving(campaigns, now) or failing:
        await replan_passed(conn, now, isolation, retry=retry)
        campaigns = await reference_sql.campaigns(conn)
    return next_move(campaigns, now)
