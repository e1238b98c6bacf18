"""Rank movement: where each unit of a leaderboard stood at the previous briefing, how far it
moved, and for how many days in a row it has been behind.

The aggregator's leaderboard (API, CSV, XLSX) and the notifier's briefing pack both read it
from here, so the room and the export never show two different arrows for one unit."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from tiendo.board import days, repository
from tiendo.board.campaign import Campaign
from tiendo.board.figures import Verdict, judge_counters, judge_one, ranked
from tiendo.board.repository import Counter
from tiendo.counting import ValueAt
from tiendo.database import Connection
from tiendo.pace import expected

# How far back "days behind in a row" looks: a campaign of the kind tiendo serves lasts
# weeks; past this the figure says "at least" (and a unit's day rollups are the cost).
MAX_DAYS_BEHIND = 120


@dataclass(frozen=True, slots=True)
class Standing:
    """One unit of a leaderboard: its rank now and at the previous briefing."""

    rank: int
    verdict: Verdict
    previous_rank: int | None  # None: it was not ranked then
    days_behind: int

    @property
    def change(self) -> int | None:
        """Places gained since the previous briefing (negative: lost); None when new."""
        return None if self.previous_rank is None else self.previous_rank - self.rank

    @property
    def movement(self) -> str:
        return movement_label(self.previous_rank, self.rank)


def movement_label(previous_rank: int | None, rank: int) -> str:
    """▲3 (up three places), ▼12 (down twelve), = (unchanged) or "new" (not ranked then)."""
    if previous_rank is None:
        return "new"
    if previous_rank > rank:
        return f"▲{previous_rank - rank}"
    if previous_rank < rank:
        return f"▼{rank - previous_rank}"
    return "="


def standings(
    now: Sequence[Verdict], then: Sequence[Verdict], days_behind: Mapping[str, int]
) -> list[Standing]:
    """The leaderboard of `now`, each unit with its rank in the leaderboard of `then`."""
    previous = {v.unit: rank for rank, v in enumerate(ranked(then), start=1)}
    return [
        Standing(rank, v, previous.get(v.unit), days_behind.get(v.unit, 0))
        for rank, v in enumerate(ranked(now), start=1)
    ]


def is_behind(v: Verdict, threshold: float) -> bool:
    """The `behind` rule's condition: not done, and pace below the campaign's threshold."""
    p = v.progress
    return p.value < p.target and p.pace is not None and p.pace < threshold


def day_ends(at: datetime, campaign: Campaign) -> list[datetime]:
    """The ends (local midnight) of the campaign days before `at`'s day, latest first,
    back to the campaign's start."""
    zone = ZoneInfo(campaign.timezone)
    day = at.astimezone(zone).date()
    out: list[datetime] = []
    for back in range(MAX_DAYS_BEHIND):
        end = datetime.combine(day - timedelta(days=back), time(0), tzinfo=zone)
        if end <= campaign.starts_at:
            break
        if end <= campaign.deadline:  # after the deadline nothing more is judged
            out.append(end)
    return out


async def days_behind(
    conn: Connection,
    campaign: Campaign,
    verdicts: Sequence[Verdict],
    at: datetime,
    live: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Per unit behind at `at`: the days in a row it has been, today counted, each earlier
    day judged at its end (local midnight) with its value then from the day rollups
    (`tiendo.board.days`: exact at midnights, no event read). Units not behind now have 0.
    `live`: the units' live values, when the caller has them (a live board)."""
    threshold = campaign.thresholds.behind
    out = {v.unit: int(is_behind(v, threshold)) for v in verdicts}
    still = {v.unit: v for v in verdicts if out[v.unit]}
    ends = day_ends(at, campaign)
    if not still or not ends:
        return out
    indicator = next(iter(still.values())).indicator
    if live is None:
        counters = await repository.counters_of(conn, campaign.id, indicator, sorted(still))
        live = {c.unit: c.value for c in counters}
    values = await days.day_ends(
        conn, campaign, indicator, {u: live.get(u, 0) for u in still}, ends[-1]
    )
    for end in ends:
        if not still:
            break
        values.move_to(end)
        # most units share one plan: the expected value of each plan once per day
        planned: dict[tuple[int, int, datetime], float] = {}
        for unit, v in list(still.items()):
            p = v.progress
            key = (p.baseline, p.target, v.deadline)
            exp = planned.get(key)
            if exp is None:
                exp = planned[key] = expected(campaign.plan(*key), end)
            value = values.value(unit)
            if value < p.target and exp > 0 and value / exp < threshold:
                out[unit] += 1
            else:
                del still[unit]
    return out


async def _then(
    conn: Connection,
    campaign: Campaign,
    counters: Sequence[Counter],
    at: datetime,
    live: bool,
) -> list[Verdict]:
    """The leaderboard's units with a target judged at the previous briefing: from the
    history for an `as_of` board; for a live board from the day rollups (a live read never
    reads the events; values exact at midnights, interpolated inside the day; only the
    ranks are used, which need values and plans, not run rates or last reports)."""
    targeted = [c for c in counters if c.target > 0]
    if not targeted:
        return []
    indicator = targeted[0].indicator
    if not live:
        before = await judge_counters(conn, campaign, indicator, targeted, at, live=False)
        return [v for v in before.values() if v.progress.target > 0]
    live_values = {indicator: {c.unit: c.value for c in targeted}}
    then = (await days.values_at(conn, campaign, live_values, at))[indicator]
    return [
        judge_one(campaign, c, ValueAt(then.get(c.unit, 0), None), None, at)  # no run rate
        for c in targeted
    ]


async def leaderboard(
    conn: Connection,
    campaign: Campaign,
    indicator: str,
    level: int,
    at: datetime,
    *,
    previous_at: datetime | None,
    live: bool,
    plan: repository.Plan | None = None,
) -> list[Standing]:
    """Every unit of `level` with a target in the campaign, ranked at `at`, with its rank
    as of `previous_at` (the previous briefing; None or before the start: every unit new).
    `plan`: the targets of an earlier tree (`repository.on_plan`): its units are ranked."""
    counters = repository.on_plan(
        await repository.counters_at_level(conn, campaign.id, indicator, level), plan
    )
    verdicts = await judge_counters(conn, campaign, indicator, counters, at, live=live)
    targeted = [v for v in verdicts.values() if v.progress.target > 0]
    then: list[Verdict] = []
    if previous_at is not None and previous_at > campaign.starts_at:
        then = await _then(conn, campaign, counters, previous_at, live)
    streaks = await days_behind(
        conn, campaign, targeted, at, {v.unit: v.progress.value for v in targeted} if live else None
    )
    return standings(targeted, then, streaks)
