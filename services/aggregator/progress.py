"""Progress of units at a moment: counters (live) or history (`as_of`) + the pace math."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.aggregator import repository
from services.aggregator.models import (
    Campaign,
    Figures,
    IndicatorProgress,
    LeaderboardRow,
    UnitRef,
)
from tiendo.database import Connection
from tiendo.pace import Progress, Status, assess, run_rate_window


@dataclass(frozen=True, slots=True)
class Verdict:
    unit: UnitRef
    parent: str | None
    progress: Progress
    last_event_at: datetime | None


async def judge(
    conn: Connection,
    campaign: Campaign,
    indicator: str,
    codes: Sequence[str],
    at: datetime,
    *,
    live: bool,
) -> dict[str, Verdict]:
    """Figures and status of each unit in `codes` for one indicator at `at`.

    `live` reads the maintained counters (as of now); otherwise values come from history.
    The 7-day run rate always comes from history.
    """
    rows: list[asyncpg.Record] = list(
        await conn.fetch(repository.SELECT_PROGRESS_OF, campaign.id, indicator, list(codes))
    )
    present = [r["unit"] for r in rows]
    counted_at = min(at, campaign.deadline)
    if live:
        values = {r["unit"]: repository.ValueAt(r["value"], r["last_event_at"]) for r in rows}
    else:
        values = await repository.values_as_of(
            conn, campaign.id, indicator, present, campaign.starts_at, counted_at
        )
    window = run_rate_window(campaign.plan(0, 0), at)
    before = (
        await repository.values_as_of(
            conn, campaign.id, indicator, present, campaign.starts_at, counted_at - window
        )
        if window is not None
        else {}
    )
    out: dict[str, Verdict] = {}
    for r in rows:
        now_value = values.get(r["unit"], repository.ValueAt(0, None))
        ago = before.get(r["unit"])
        progress = assess(
            campaign.plan(r["baseline"], r["target"], r["deadline"]),
            now_value.value,
            at,
            last_event_at=now_value.last_event_at,
            value_window_ago=(ago.value if ago else 0) if window is not None else None,
            thresholds=campaign.thresholds,
        )
        out[r["unit"]] = Verdict(
            UnitRef(code=r["unit"], name=r["unit_name"], level=r["level"]),
            r["parent_code"],
            progress,
            now_value.last_event_at,
        )
    return out


def _figures(v: Verdict, children_total: int, children_done: int) -> Figures:
    p = v.progress
    return Figures(
        value=p.value,
        baseline=p.baseline,
        target=p.target,
        pct=p.pct,
        expected=p.expected,
        expected_pct=p.expected_pct,
        pace=p.pace,
        run_rate_7d=p.run_rate_7d,
        required_daily_rate=p.required_daily_rate,
        projected_completion=p.projected_completion,
        status=p.status.value,
        last_event_at=v.last_event_at,
        children_total=children_total,
        children_done=children_done,
    )


async def progress_of(
    conn: Connection,
    campaign: Campaign,
    unit: str,
    children: Sequence[str],
    at: datetime,
    *,
    live: bool,
) -> list[IndicatorProgress]:
    """Per indicator of the campaign: the unit's figures at `at`."""
    out: list[IndicatorProgress] = []
    for indicator in campaign.indicators:
        verdicts = await judge(conn, campaign, indicator, [unit, *children], at, live=live)
        if unit not in verdicts:
            continue
        done = sum(
            1 for c in children if c in verdicts and verdicts[c].progress.status is Status.DONE
        )
        out.append(
            IndicatorProgress(
                indicator=indicator, **_figures(verdicts[unit], len(children), done).model_dump()
            )
        )
    return out


def rank_key(v: Verdict) -> tuple[float, float, str]:
    """By pct, ties by higher pace, then by code (SPEC §4.3); unknown figures rank last."""
    pct = v.progress.pct if v.progress.pct is not None else -math.inf
    pace = v.progress.pace if v.progress.pace is not None else -math.inf
    return (-pct, -pace, v.unit.code)


async def leaderboard(
    conn: Connection,
    campaign: Campaign,
    indicator: str,
    level: int,
    at: datetime,
    *,
    live: bool,
) -> list[LeaderboardRow]:
    """Every unit of `level`, ranked."""
    codes = [r["code"] for r in await conn.fetch(repository.SELECT_LEVEL, level)]
    children = [r["code"] for r in await conn.fetch(repository.SELECT_LEVEL, level + 1)]
    verdicts = await judge(conn, campaign, indicator, codes, at, live=live)
    kids = await judge(conn, campaign, indicator, children, at, live=live) if children else {}
    total: dict[str, int] = {}
    done: dict[str, int] = {}
    for kid in kids.values():
        if kid.parent is not None:
            total[kid.parent] = total.get(kid.parent, 0) + 1
            done[kid.parent] = done.get(kid.parent, 0) + (kid.progress.status is Status.DONE)
    ranked = sorted(verdicts.values(), key=rank_key)
    return [
        LeaderboardRow(
            rank=i,
            unit=v.unit,
            parent=v.parent,
            **_figures(v, total.get(v.unit.code, 0), done.get(v.unit.code, 0)).model_dump(),
        )
        for i, v in enumerate(ranked, start=1)
    ]
