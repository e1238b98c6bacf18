"""The weekly briefing's bottom N: exactly the board's leaderboard `as_of` the briefing
moment (contract §6), over the units of the level with a target in the campaign.

Computed from history, so a notifier that starts late, restarts, or runs as a second
replica finds the same ranking. Stored per (campaign, briefing) with the version of the
history it was computed from, and computed again only when that moved: a late report from
before the briefing, or a changed target, changes the leaderboard as of the briefing, and
the alerts follow it."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.notifier.policy import Policy
from services.notifier.repository import briefings as briefing_sql
from services.notifier.rules import briefing_slot
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.board.figures import bottom, is_judged, judge, ranked
from tiendo.board.plans import earlier_plan
from tiendo.counting import Key
from tiendo.database import Connection


async def on_tree(
    conn: Connection, campaign: Campaign, at: datetime
) -> tuple[board.Plan | None, list[board.Counter]]:
    """The campaign's counters with a target on the tree it reports on at `at`, and that
    tree's plan (None: the live counters' own). A briefing before a cut-over, asked after
    the counters moved, is on the old tree's units (docs/units-over-time.md)."""
    plan = await earlier_plan(conn, campaign, at)
    every = await board.targeted(conn, campaign.id, only=plan is None)
    return plan, [c for c in board.on_plan(every, plan) if is_judged(c.target)]


def levels_of(counters: Sequence[board.Counter]) -> tuple[int, ...]:
    """The levels that hold a counter, top first."""
    return tuple(sorted({c.level for c in counters}))


def briefing_level(levels: Sequence[int], asked: int | None) -> int | None:
    """The level a briefing ranks: `asked` (a pack's `level`, or the policy's `bottom_rank`
    level when one is set), else the deepest of `levels`, those of the tree the campaign
    reports on at the briefing (`on_tree`): wards (3) on the tree of 2023, communes (2)
    since the districts went on 1 July 2025, so a campaign across the cut-over ranks wards
    before it and communes after. None: no level holds a unit with a target."""
    if asked is not None:
        return asked
    return max(levels, default=None)


async def ranked_level(
    conn: Connection, campaign: Campaign, at: datetime, asked: int | None
) -> int | None:
    """`briefing_level` of the briefing at `at`: what the `bottom_rank` rule and
    `tiendo check` rank."""
    if asked is not None:
        return asked  # (the tree need not be read)
    _, counters = await on_tree(conn, campaign, at)
    return briefing_level(levels_of(counters), asked)


async def briefing_ranks(
    conn: Connection,
    campaigns: dict[str, Campaign],
    policies: dict[str, Policy],
    at: datetime,
) -> dict[Key, dict[str, Any]]:
    """The keys in the bottom N of the latest weekly briefing of each campaign."""
    out: dict[Key, dict[str, Any]] = {}
    for campaign in campaigns.values():
        config = policies[campaign.id].bottom_rank
        if not config.enabled or config.n <= 0:
            continue
        slot = briefing_slot(
            at, campaign.timezone, config.weekday, policies[campaign.id].briefing_time()
        )
        if slot <= campaign.starts_at or slot > campaign.deadline:
            continue
        version = await briefing_sql.history_version(conn, campaign.id, slot)
        stored = await briefing_sql.ranks(conn, campaign.id, slot)
        if not any(not r["unit"] and r["history_version"] == version for r in stored):
            await _store(conn, campaign, slot, config.level, config.n, version)
            stored = await briefing_sql.ranks(conn, campaign.id, slot)
        for r in stored:
            if r["unit"]:
                out[Key(campaign.id, r["unit"], r["indicator"])] = {
                    "rank": r["rank"],
                    "of_units": r["of_units"],
                    "briefing_at": slot.isoformat(),
                }
    return out


@dataclass(frozen=True, slots=True)
class Lowest:
    """A unit in the bottom N of a leaderboard."""

    rank: int
    unit: str
    pct: float | None


@dataclass(frozen=True, slots=True)
class Bottom:
    of_units: int  # how many units the leaderboard ranks
    lowest: list[Lowest]


async def bottom_of_level(
    conn: Connection, campaign: Campaign, indicator: str, level: int, n: int, at: datetime
) -> Bottom:
    """The bottom N of the leaderboard of one indicator at `level`, as of `at`."""
    codes = await board.level_codes(conn, level)
    verdicts = await judge(conn, campaign, indicator, codes, at, live=False)
    ranking = ranked([v for v in verdicts.values() if is_judged(v.progress.target)])
    lowest = [Lowest(rank, v.unit, v.progress.pct) for rank, v in bottom(ranking, n)]
    return Bottom(len(ranking), lowest)


async def briefing_bottom(
    conn: Connection, campaign: Campaign, slot: datetime, level: int | None, n: int
) -> dict[str, Bottom]:
    """Each indicator's bottom N at the briefing at `slot`, on the level it ranks
    (`ranked_level` of the policy's `level`): what `bottom_rank` alerts, and what
    `tiendo check` holds its alerts against. Empty when no unit has a target then."""
    on_level = await ranked_level(conn, campaign, slot, level)
    if on_level is None:
        return {}
    return {
        indicator: await bottom_of_level(conn, campaign, indicator, on_level, n, slot)
        for indicator in campaign.indicators
    }


async def _store(
    conn: Connection, campaign: Campaign, slot: datetime, level: int | None, n: int, version: str
) -> None:
    rows = [
        (indicator, b.unit, b.rank, found.of_units, b.pct)
        for indicator, found in (await briefing_bottom(conn, campaign, slot, level, n)).items()
        for b in found.lowest
    ]
    # (stored when empty too: a briefing is ranked once per version of the history)
    await briefing_sql.replace_ranks(conn, campaign.id, slot, version, rows)
