"""The read API's shapes of the board's figures: a unit's progress, a level's leaderboard."""

from collections.abc import Sequence
from datetime import datetime

from services.aggregator.models import Figures, IndicatorProgress, LeaderboardRow, UnitRef
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.board.figures import Verdict, judge, ranked
from tiendo.database import Connection
from tiendo.pace import Status


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


async def leaderboard(
    conn: Connection,
    campaign: Campaign,
    indicator: str,
    level: int,
    at: datetime,
    *,
    live: bool,
) -> list[LeaderboardRow]:
    """Every unit of `level` with a target in the campaign, ranked."""
    codes = await board.level_codes(conn, level)
    children = await board.level_codes(conn, level + 1)
    verdicts = await judge(conn, campaign, indicator, codes, at, live=live)
    kids = await judge(conn, campaign, indicator, children, at, live=live) if children else {}
    total: dict[str, int] = {}
    done: dict[str, int] = {}
    for kid in kids.values():
        if kid.parent is not None:
            total[kid.parent] = total.get(kid.parent, 0) + 1
            done[kid.parent] = done.get(kid.parent, 0) + (kid.progress.status is Status.DONE)
    targeted = [v for v in verdicts.values() if v.progress.target > 0]
    return [
        LeaderboardRow(
            rank=i,
            unit=UnitRef(code=v.unit, name=v.unit_name, level=v.level),
            parent=v.parent,
            **_figures(v, total.get(v.unit, 0), done.get(v.unit, 0)).model_dump(),
        )
        for i, v in enumerate(ranked(targeted), start=1)
    ]
