"""A campaign's plan (targets and baselines) on the tree of a moment: what the live
counters hold once the campaign reports on that tree, and what a read of a moment whose
tree the counters are not on judges by (docs/units-over-time.md). One rule for the
aggregator, which stores it, and for every reader that judges in the meantime."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tiendo.board import repository
from tiendo.board.campaign import Campaign
from tiendo.database import Connection
from tiendo.rollup import effective_targets, subtree_sums


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One unit and indicator of a campaign's plan: own and subtree baseline, target."""

    unit: str
    indicator: str
    own_baseline: int
    baseline: int
    target: int
    deadline: datetime | None


async def plan_on_tree(
    conn: Connection, campaign_id: str, indicators: Sequence[str], moment: datetime
) -> list[PlanRow]:
    """The campaign's targets and baselines on the tree in force at `moment`: what the
    live counters hold when the campaign reports there (the aggregator's `replan`), and
    what a read of that tree judges by while they are elsewhere (`earlier_plan`)."""
    every_version = await repository.tree(conn)
    parents = await repository.tree_at(conn, moment)
    targets = await repository.targets(conn, campaign_id)
    # closed versions' baselines and targets count where their people went; a version's
    # own baseline stays its own (part of its own value, which is carried as a whole)
    carried = await repository.carried_plan(conn, campaign_id, moment)
    plan: list[PlanRow] = []
    for indicator in indicators:
        mine = [t for t in targets if t.indicator == indicator]
        own_baseline = {t.unit: t.baseline for t in mine}
        deadlines = {t.unit: t.deadline for t in mine}
        landed = [c for c in carried if c.indicator == indicator]
        baselines = subtree_sums(parents, {c.unit: c.baseline for c in landed})
        # Targets set on this tree's own units keep their meaning: a parent's target, if
        # set, stands for its whole subtree, whatever a cut-over carried into it (a city's
        # 1,000 stays 1,000 when its wards' targets land on its communes). Below such
        # targets, what closed versions carried in adds up the tree like a baseline: a
        # split ward's target left at a city without one is the city's on top of its
        # communes', not instead of them.
        explicit = {t.unit: t.target for t in mine if t.unit in parents and t.target is not None}
        carried_in = {
            c.unit: (c.target or 0) - (explicit.get(c.unit) or 0)
            for c in landed
            if c.target is not None
        }
        effective = effective_targets(parents, explicit, carried_in)
        plan.extend(
            PlanRow(
                code,
                indicator,
                own_baseline.get(code, 0),
                baselines.get(code, 0),
                effective.get(code, 0),
                deadlines.get(code),
            )
            # a version outside the tree keeps its own baseline and is not judged
            for code in every_version
        )
    return plan


async def earlier_plan(
    conn: Connection, campaign: Campaign, at: datetime, indicators: Sequence[str] | None = None
) -> repository.Plan | None:
    """For a read of a moment whose tree is not the one the campaign's live counters are on
    (an `as_of` before its cut-over, or any read after one they are not moved past yet):
    the campaign's targets and baselines on that tree, of its `indicators` (None: all).
    None when the trees are the same (the counters' own plan is the right one): no query."""
    if campaign.counters_on_tree(at):
        return None
    tree = await repository.tree_moment(conn, campaign.reports_on(at))
    wanted = campaign.indicators if indicators is None else indicators
    rows = await plan_on_tree(conn, campaign.id, wanted, tree)
    return {(r.unit, r.indicator): (r.target, r.baseline) for r in rows}
