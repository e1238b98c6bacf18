"""The weekly briefing's bottom N: exactly the board's leaderboard `as_of` the briefing
moment (contract §6), over the units of the level with a target in the campaign.

Computed from history, so a notifier that starts late, restarts, or runs as a second
replica finds the same ranking. Stored per (campaign, briefing) with the version of the
history it was computed from, and computed again only when that moved: a late report from
before the briefing, or a changed target, changes the leaderboard as of the briefing, and
the alerts follow it."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.notifier.policy import Policy
from services.notifier.repository import briefings as briefing_sql
from services.notifier.rules import briefing_slot
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.board.figures import bottom, judge, ranked
from tiendo.counting import Key
from tiendo.database import Connection


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
        day = slot.astimezone(ZoneInfo(campaign.timezone)).date()
        version = await briefing_sql.history_version(conn, campaign.id, day)
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
    ranking = ranked([v for v in verdicts.values() if v.progress.target > 0])
    lowest = [Lowest(rank, v.unit, v.progress.pct) for rank, v in bottom(ranking, n)]
    return Bottom(len(ranking), lowest)


async def _store(
    conn: Connection, campaign: Campaign, slot: datetime, level: int, n: int, version: str
) -> None:
    rows: list[tuple[str, str, int, int, float | None]] = []
    for indicator in campaign.indicators:
        found = await bottom_of_level(conn, campaign, indicator, level, n, slot)
        rows.extend((indicator, b.unit, b.rank, found.of_units, b.pct) for b in found.lowest)
    await briefing_sql.replace_ranks(conn, campaign.id, slot, version, rows)
