"""The figures of every unit, judged in the background (never during a scrape or a board
refresh): exported as metrics down to the per-unit level, and stored for the boards
(`board_figures`, every level) so that no panel computes status or pace again."""

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from itertools import groupby
from typing import Any

from services.aggregator.metrics import CampaignFigures, LevelFigures, UnitFigures, UnitSnapshot
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.board.figures import Verdict, is_judged, judge_campaign, ranked
from tiendo.board.isolation import CampaignIsolation
from tiendo.board.window import WindowValues
from tiendo.counting import Key
from tiendo.counting.rules import local_day
from tiendo.database import Connection
from tiendo.pace import is_done

# Events counted on the campaign's current local day in each exported unit's subtree: its
# row of today in the day rollups (`tiendo.counting.rollups`, bucketed by the same
# `local_day`), on the campaign's tree. Only today's rows are read, so the cost does not
# grow with the campaign's age.
SELECT_EVENTS_TODAY = f"""
SELECT d.campaign_id, d.unit, d.indicator, d.events::bigint AS events
FROM subtree_days d
JOIN campaigns c ON c.id = d.campaign_id
JOIN units l ON l.code = d.unit
WHERE d.day = {local_day("$2::timestamptz")} AND l.level <= $1
  AND d.events <> 0
  AND c.id <> ALL ($3::text[])  -- a campaign flagged unusable may have no valid zone
"""


BOARD_FIGURES_COLUMNS = (
    "campaign_id",
    "unit",
    "indicator",
    "level",
    "unit_name",
    "parent_code",
    "value",
    "baseline",
    "target",
    "expected",
    "pct",
    "pace",
    "run_rate_7d",
    "required_daily_rate",
    "projected_completion",
    "status",
    "last_event_at",
    "deadline",
    "rank",
    "judged_at",
)


def _board_rows(verdicts: Iterable[Verdict], at: datetime) -> list[tuple[Any, ...]]:
    """`board_figures` rows of the keys with a target (those the campaign judges), ranked
    within each leaderboard (campaign, indicator, level) as the leaderboard API ranks."""

    def board(v: Verdict) -> tuple[str, str, int]:
        return (v.campaign_id, v.indicator, v.level)

    rows: list[tuple[Any, ...]] = []
    targeted = sorted((v for v in verdicts if is_judged(v.progress.target)), key=board)
    for _, leaderboard in groupby(targeted, key=board):
        for rank, v in enumerate(ranked(list(leaderboard)), start=1):
            p = v.progress
            rows.append(
                (
                    *(v.campaign_id, v.unit, v.indicator, v.level, v.unit_name, v.parent),
                    *(p.value, p.baseline, p.target, p.expected, p.pct, p.pace),
                    *(p.run_rate_7d, p.required_daily_rate, p.projected_completion),
                    *(p.status.value, v.last_event_at, v.deadline, rank, at),
                )
            )
    return rows


# The lock replicas take turns under to rewrite `board_figures`.
_BOARD_FIGURES_LOCK = 7301120


@asynccontextmanager
async def taking_turns(conn: Connection) -> AsyncIterator[None]:
    """Replicas' snapshot passes one at a time, each from before its transaction begins:
    a pass that reads one state (`tiendo.database.one_state`) and rewrites
    `board_figures` must take its snapshot after the previous pass committed, or its
    delete would not see the rows that pass inserted, and its insert would meet them."""
    await conn.execute("SELECT pg_advisory_lock($1)", _BOARD_FIGURES_LOCK)
    try:
        yield
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _BOARD_FIGURES_LOCK)


async def store_board_figures(conn: Connection, verdicts: Iterable[Verdict], at: datetime) -> None:
    """Replace the boards' figures with these, in one transaction: a board never reads half
    of a snapshot, and a key that left (a campaign deleted or flagged) leaves the boards."""
    rows = _board_rows(verdicts, at)
    async with conn.transaction():
        # Replicas each rewrite the table: one at a time, or a second one's insert would
        # meet the rows the first committed after the second's delete began (a pass of
        # one state takes its turn before its snapshot: `taking_turns`).
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _BOARD_FIGURES_LOCK)
        await conn.execute("DELETE FROM board_figures")
        await conn.copy_records_to_table(
            "board_figures", records=rows, columns=BOARD_FIGURES_COLUMNS
        )


async def unit_figures(
    conn: Connection,
    max_level: int,
    now: datetime,
    window_values: WindowValues | None = None,
    unusable: Sequence[str] = (),
    isolation: CampaignIsolation | None = None,
) -> UnitSnapshot:
    """Judge every (campaign, unit, indicator) at `now` through tiendo/board, store the
    figures for the boards (`store_board_figures`) and return what the metrics export:
    per-unit figures down to `max_level`, per-level counts and campaign windows.

    `window_values`: where values one window ago are kept between calls (none: computed);
    `unusable`: campaigns left out; `isolation`: where a campaign whose judging fails is
    left out alone (tiendo.board.isolation; none: a fresh one).
    """
    campaigns = await board.campaigns(conn)
    for flagged in unusable:
        campaigns.pop(flagged, None)

    async def judged(campaign: Campaign) -> list[Verdict]:
        found = await judge_campaign(conn, campaign, now, live=True, window=window_values)
        return [v for v in found if v.indicator in campaign.indicators]

    # each campaign from one state: a start value a window ago is kept for minutes, and
    # one worked out from counters and rollups of two moments would be kept wrong
    each = await (isolation or CampaignIsolation()).each(
        conn, campaigns.values(), judged, reads_one_state=True
    )
    verdicts = [v for vs in each.values() for v in vs]
    await store_board_figures(conn, verdicts, now)
    events_today = {
        Key(r["campaign_id"], r["unit"], r["indicator"]): r["events"]
        for r in await conn.fetch(SELECT_EVENTS_TODAY, max_level, now, list(unusable))
    }
    figures = [
        UnitFigures(
            campaign=v.campaign_id,
            unit=v.unit,
            level=v.level,
            indicator=v.indicator,
            value=v.progress.value,
            target=v.progress.target,
            expected=v.progress.expected,
            pct=v.progress.pct,
            pace=v.progress.pace,
            status=v.progress.status,
            projected_completion=v.progress.projected_completion,
            last_event_at=v.last_event_at,
            events_today=events_today.get(v.key, 0),
        )
        for v in verdicts
        # a unit without a target would pass for done on the boards' status counts
        if v.level <= max_level and is_judged(v.progress.target)
    ]
    levels = level_counts(verdicts)
    windows = [CampaignFigures(c.id, c.starts_at, c.deadline) for c in campaigns.values()]
    return UnitSnapshot(units=figures, levels=levels, campaigns=windows, taken_at=now)


def level_counts(verdicts: Iterable[Verdict]) -> list[LevelFigures]:
    """Per (campaign, level, indicator), the units with a positive target and how many
    reached it (`is_done`), of the same verdicts as every other figure of the pass: a
    campaign left out of the pass (failing, unusable, not moved) is left out of these."""
    counts: dict[tuple[str, int, str], tuple[int, int]] = {}
    for v in verdicts:
        if is_judged(v.progress.target):
            key = (v.campaign_id, v.level, v.indicator)
            units, done = counts.get(key, (0, 0))
            counts[key] = (units + 1, done + is_done(v.progress.value, v.progress.target))
    return [LevelFigures(c, level, i, n, done) for (c, level, i), (n, done) in counts.items()]
