"""The read API's shapes of the board's figures: a unit's progress, a level's leaderboard."""

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, overload

from services.aggregator.models import IndicatorProgress, LeaderboardRow, UnitRef
from tiendo.board import movement
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.board.figures import (
    OFF_LOOP,
    Verdict,
    is_judged,
    judge_counters,
    judge_indicators,
)
from tiendo.board.plans import earlier_plan
from tiendo.database import Connection
from tiendo.pace import Status

# The figures that measure a key against its target and plan. A key the campaign does not
# judge (`is_judged`: no target, e.g. a district outside a push limited to another) shows
# them null: its plan runs to 0, and `pace`'s rule calls 0 of 0 done, which would tell a
# chief the unit reached a target it never had. Its value, run rate and last report stand.
JUDGEMENT = (
    "expected",
    "expected_pct",
    "pace",
    "required_daily_rate",
    "projected_completion",
    "status",
)


def _figures(v: Verdict, children_total: int, children_done: int) -> dict[str, Any]:
    """The fields of `Figures`, validated once by the row that carries them (a leaderboard
    builds ten thousand rows per request)."""
    p = v.progress
    figures: dict[str, Any] = {
        "value": p.value,
        "baseline": p.baseline,
        "target": p.target,
        "pct": p.pct,
        "expected": p.expected,
        "expected_pct": p.expected_pct,
        "pace": p.pace,
        "run_rate_7d": p.run_rate_7d,
        "required_daily_rate": p.required_daily_rate,
        "projected_completion": p.projected_completion,
        "status": p.status.value,
        "last_event_at": v.last_event_at,
        "children_total": children_total,
        "children_done": children_done,
    }
    if not is_judged(p.target):
        figures.update(dict.fromkeys(JUDGEMENT))
    return figures


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
    plan = None if live else await earlier_plan(conn, campaign, at)
    judged = await judge_indicators(
        conn, campaign, campaign.indicators, unit, children, at, live=live, plan=plan
    )
    return [
        IndicatorProgress(
            indicator=indicator,
            **_figures(
                judged[indicator].verdict,
                judged[indicator].children_total,
                judged[indicator].children_done,
            ),
        )
        for indicator in campaign.indicators
        if indicator in judged
    ]


def _row(s: movement.Standing, children_total: int, children_done: int) -> LeaderboardRow:
    """A leaderboard's row of a judged standing, with its children's counts."""
    return LeaderboardRow(
        rank=s.rank,
        previous_rank=s.previous_rank,
        rank_change=s.change,
        movement=s.movement,
        days_behind=s.days_behind,
        unit=UnitRef(code=s.verdict.unit, name=s.verdict.unit_name, level=s.verdict.level),
        parent=s.verdict.parent,
        **_figures(s.verdict, children_total, children_done),
    )


class Leaderboard(Sequence[LeaderboardRow]):
    """A ranking whose response rows are built when read: a page of JSON judges and builds
    its hundred, an export every one (ten thousand judged and validated rows were most of
    a board's Python). A row's days behind in a row are read by `settle` for the rows
    shown (a streak reads its unit's day rollups back to the start); reading a row not
    settled is an error, never a silent 0."""

    def __init__(
        self,
        placed: Sequence[movement.Placed],
        ranking: movement.Ranking,
        children: tuple[Mapping[str, int], Mapping[str, int]],
    ) -> None:
        self.placed = list(placed)
        self.ranking = ranking
        self.children = children  # per unit: its children judged, and those done
        self.days_behind: dict[str, int] = {}
        self.settled: set[str] = set()

    def __len__(self) -> int:
        return len(self.placed)

    @overload
    def __getitem__(self, index: int) -> LeaderboardRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[LeaderboardRow]: ...

    def __getitem__(self, index: int | slice) -> LeaderboardRow | list[LeaderboardRow]:
        if isinstance(index, slice):
            return self._rows(self.placed[index])
        return self._rows([self.placed[index]])[0]

    def __iter__(self) -> Iterator[LeaderboardRow]:
        # judged a chunk at a time: the plan's window once per chunk, not once per row
        for start in range(0, len(self.placed), 1000):
            yield from self[start : start + 1000]

    def _rows(self, placed: Sequence[movement.Placed]) -> list[LeaderboardRow]:
        missing = [p.unit for p in placed if p.unit not in self.settled]
        if missing:
            raise LookupError(f"days behind of {missing[:3]} not read: settle their rows first")
        total, done = self.children
        return [
            _row(s, total.get(s.verdict.unit, 0), done.get(s.verdict.unit, 0))
            for s in self.ranking.standings(placed, self.days_behind)
        ]

    async def settle(self, conn: Connection, rows: slice = slice(None)) -> "Leaderboard":
        """Read the days behind in a row of the rows `rows` (a page; all: an export)."""
        wanted = [p for p in self.placed[rows] if p.unit not in self.settled]
        if len(wanted) < OFF_LOOP:
            standings = self.ranking.standings(wanted)
        else:
            standings = await asyncio.to_thread(self.ranking.standings, wanted)
        self.days_behind.update(await movement.days_behind(conn, self.ranking, standings))
        self.settled.update(p.unit for p in wanted)
        return self

    def only(self, keep: Callable[[str], bool]) -> "Leaderboard":
        """The rows of the units `keep` lets through, each keeping its rank."""
        out = Leaderboard([p for p in self.placed if keep(p.unit)], self.ranking, self.children)
        out.days_behind, out.settled = self.days_behind, self.settled
        return out


async def leaderboard(
    conn: Connection,
    campaign: Campaign,
    indicator: str,
    level: int,
    at: datetime,
    *,
    live: bool,
    previous_at: datetime | None = None,
    settle: bool = True,
    beside: "Connection | None" = None,
) -> Leaderboard:
    """Every unit of `level` with a target in the campaign, ranked, with its rank as of
    `previous_at` (the previous briefing) and its days behind in a row (`settle`: read for
    every row now; otherwise `Leaderboard.settle` reads them for the rows shown). `beside`:
    a second connection for a live board's day rollups (`movement.ranking`)."""
    plan = None if live else await earlier_plan(conn, campaign, at)
    ranking = await movement.ranking(
        conn,
        campaign,
        indicator,
        level,
        at,
        previous_at=previous_at,
        live=live,
        plan=plan,
        beside=beside,
    )
    children = board.on_plan(
        await board.counters_at_level(conn, campaign.id, indicator, level + 1), plan
    )
    kids = await judge_counters(conn, campaign, indicator, children, at, live=live)
    board_ = Leaderboard(ranking.placed, ranking, _children(kids.values()))
    return await board_.settle(conn) if settle else board_


def _children(kids: Iterable[Verdict]) -> tuple[dict[str, int], dict[str, int]]:
    """Per parent: its children the campaign judges (`is_judged`), and those done."""
    total: dict[str, int] = {}
    done: dict[str, int] = {}
    for kid in kids:
        if kid.parent is not None and is_judged(kid.progress.target):
            total[kid.parent] = total.get(kid.parent, 0) + 1
            done[kid.parent] = done.get(kid.parent, 0) + (kid.progress.status is Status.DONE)
    return total, done
