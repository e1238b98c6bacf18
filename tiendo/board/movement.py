"""Rank movement: where each unit of a leaderboard stood at the previous briefing, how far it
moved, and for how many days in a row it has been behind.

The aggregator's leaderboard (API, CSV, XLSX) and the notifier's briefing pack both read it
from here, so the room and the export never show two different arrows for one unit."""

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tiendo.board import days, repository
from tiendo.board.campaign import Campaign
from tiendo.board.figures import (
    OFF_LOOP,
    Verdict,
    is_judged,
    judge_counters,
    judge_many,
    rank_key,
    rank_keys,
    ranked,
    ranks,
    values_of,
)
from tiendo.board.plans import earlier_plan
from tiendo.board.repository import Ranked
from tiendo.counting import ValueAt
from tiendo.database import Connection
from tiendo.pace import plan_fraction, planned, run_rate_window

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


def week_before(campaign: Campaign, at: datetime) -> datetime:
    """A leaderboard's previous briefing when none is named: the end (last microsecond) of
    the campaign's local day a week before `at`. The day rollups hold every unit's value
    exactly there, so a live board reads the ranks then from them (`days.exact_at`), never
    from the history; and in the same read as the value a run-rate window ago, which lies
    on that day too (`days.rolled_at` reads each local day once)."""
    day = days.local_day(campaign, at - timedelta(days=7))
    return days.day_start(campaign, day + timedelta(days=1)) - days.INSTANT


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
    return ranked_standings(now, ranks([rank_key(v) for v in then]), days_behind)


def ranked_standings(
    now: Sequence[Verdict], previous: Mapping[str, int], days_behind: Mapping[str, int]
) -> list[Standing]:
    """The leaderboard of `now`, each unit with its rank then (`previous`, `ranks`)."""
    return [
        Standing(rank, v, previous.get(v.unit), days_behind.get(v.unit, 0))
        for rank, v in enumerate(ranked(now), start=1)
    ]


def settled(standings: Sequence[Standing], days_behind: Mapping[str, int]) -> list[Standing]:
    """The standings with their days behind in a row (`days_behind`; missing: 0)."""
    return [replace(s, days_behind=days_behind.get(s.verdict.unit, 0)) for s in standings]


def is_behind(v: Verdict, threshold: float) -> bool:
    """The `behind` rule's condition: not done, and pace below the campaign's threshold."""
    p = v.progress
    return p.value < p.target and p.pace is not None and p.pace < threshold


def day_ends(at: datetime, campaign: Campaign) -> list[datetime]:
    """The ends (local midnights) of the campaign days before `at`'s day, latest first,
    back to the campaign's start: each day is judged there on its plan, with its value at
    its last instant (`streaks`)."""
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


async def _live_values(
    conn: Connection, campaign: Campaign, behind: Sequence[Verdict], live: bool
) -> dict[str, int]:
    """The live values of the units behind (0: no counter)."""
    if live:
        return {v.unit: v.progress.value for v in behind}
    units = sorted(v.unit for v in behind)
    counters = await repository.counters_of(conn, campaign.id, behind[0].indicator, units)
    values = {c.unit: c.value for c in counters}
    return {v.unit: values.get(v.unit, 0) for v in behind}


def streaks(
    campaign: Campaign,
    verdicts: Sequence[Verdict],
    ends: Sequence[datetime],
    live: Mapping[str, int],
    changes: days.Changes,
) -> dict[str, int]:
    """Per unit behind now (`verdicts`): the days in a row it has been, today counted, each
    earlier day judged at its end (local midnight) with its value at its last instant
    from the day rollups (`tiendo.board.days`: exact there, no event read; a report
    stamped at the midnight itself is the next day's); 0 for the others.
    Pure (and CPU-bound: run off the event loop). `ends`:
    `day_ends`; `live`: the live value of each unit behind now; `changes`: their day changes
    from the earliest end's day on (`days.day_changes` from `ends[-1]`)."""
    threshold = campaign.thresholds.behind
    out = {v.unit: int(is_behind(v, threshold)) for v in verdicts}
    first = days.local_day(campaign, ends[-1]) if ends else date.min
    end_days = [(days.local_day(campaign, end) - first).days for end in ends]
    # most units share one plan: the plan's fraction at each end once per deadline
    fractions: dict[datetime, list[float]] = {}
    nothing: tuple[list[int], list[int]] = ([], [])
    for v in verdicts:
        if not out[v.unit]:
            continue
        p = v.progress
        shares = fractions.get(v.deadline)
        if shares is None:
            plan = campaign.plan(0, 0, v.deadline)
            shares = fractions[v.deadline] = [plan_fraction(plan, end) for end in ends]
        value = live.get(v.unit, 0)
        mine, change = changes.get(v.unit, nothing)
        taken, last = 0, len(mine)
        for day, share in zip(end_days, shares, strict=True):
            # the value at this end: the live value less the changes from the end's day on
            while taken < last and mine[taken] >= day:
                value -= change[taken]
                taken += 1
            exp = planned(p.baseline, p.target, share)  # expected(plan, end)
            if value < p.target and exp > 0 and value / exp < threshold:
                out[v.unit] += 1
            else:
                break
    return out


@dataclass(frozen=True, slots=True)
class Placed:
    """A unit's place in a ranking; its figures are judged when shown (`Ranking.standings`)."""

    rank: int
    counter: Ranked  # made a `Counter` when judged
    previous_rank: int | None

    @property
    def unit(self) -> str:
        return self.counter.unit


@dataclass(frozen=True, slots=True)
class Ranking:
    """A leaderboard ranked by pct and pace alone, each unit's figures (run rate,
    projection, status) and days behind in a row left for the rows shown: a board shows a
    page of ten thousand units, and a streak reads its unit's day rollups back to the
    start. `standings` judges rows, `days_behind` reads their streaks."""

    placed: list[Placed]
    campaign: Campaign
    indicator: str
    at: datetime
    live: bool
    values: Mapping[str, ValueAt]  # each unit's value at `at`
    ago: Mapping[str, int] | None  # and a run-rate window before (None: no window yet)

    def standings(
        self, placed: Sequence[Placed], days_behind: Mapping[str, int] | None = None
    ) -> list[Standing]:
        """The rows `placed` judged (`judge_many`), with their days behind (missing: 0)."""
        judged = judge_many(
            self.campaign,
            [p.counter.as_counter() for p in placed],
            self.values,
            self.ago,
            self.at,
        )
        streak = days_behind or {}
        return [
            Standing(p.rank, judged[p.unit], p.previous_rank, streak.get(p.unit, 0)) for p in placed
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
    as of `previous_at` and its days behind in a row (`ranking`, then every row judged and
    its `days_behind` read)."""
    ranks_now = await ranking(
        conn, campaign, indicator, level, at, previous_at=previous_at, live=live, plan=plan
    )
    rows = await asyncio.to_thread(ranks_now.standings, ranks_now.placed)
    return settled(rows, await days_behind(conn, ranks_now, rows))


async def ranking(
    conn: Connection,
    campaign: Campaign,
    indicator: str,
    level: int,
    at: datetime,
    *,
    previous_at: datetime | None,
    live: bool,
    plan: repository.Plan | None = None,
    beside: "Connection | None" = None,
) -> Ranking:
    """Every unit of `level` with a target in the campaign, ranked at `at`, with its rank
    as of `previous_at` (the previous briefing; None or before the start: every unit new).
    `plan`: the targets of an earlier tree (`repository.on_plan`): its units are ranked;
    none given, an `as_of` ranking reads it (`plans.earlier_plan`). `beside`: a second
    connection, on which a live board reads the level's day rollups
    while `conn` reads its counters (each about half the database's time of the read).

    Ranked in a worker thread: ten thousand units hold a core for a while, and the event
    loop serves every other read meanwhile."""
    if plan is None and not live:
        plan = await earlier_plan(conn, campaign, at, [indicator])
    window = run_rate_window(campaign.plan(0, 0), at)
    ranked_then = previous_at is not None and previous_at > campaign.starts_at
    # A live board ranks the moment then from its day rollups where they give its values
    # exactly (a day's end, which the default `previous` is: `week_before`), else from the
    # history as an `as_of` board does: the same ranks as `as_of` now either way
    # (interpolated inside a day, they moved ranks that the history did not). Only the
    # ranks are used, which need values and plans, not run rates or last reports.
    rolled_then = (
        ranked_then and live and previous_at is not None and days.exact_at(campaign, previous_at)
    )
    moments = [min(at, campaign.deadline) - window] if window is not None else []
    if rolled_then:
        assert previous_at is not None
        moments.append(previous_at)
    rolling = (
        asyncio.create_task(days.rolled_at(beside, campaign, indicator, level, moments))
        if live and beside is not None and plan is None
        else None
    )
    ordering: asyncio.Future[list[tuple[float, float, str]]] | None = None
    try:
        rows = await repository.counter_rows_at_level(conn, campaign.id, indicator, level)
        # an earlier tree's plan is set on counters; otherwise rows are ranked as read, and
        # made counters for the rows judged only
        counters: Sequence[Ranked] = (
            rows if plan is None else repository.on_plan([r.as_counter() for r in rows], plan)
        )
        # `as_of`: the values then from the history; live: the counters'
        values = await values_of(conn, campaign, indicator, counters, at, live)
        targeted = [c for c in counters if is_judged(c.target)]
        live_values = {c.unit: c.value for c in counters}
        now = live_values if live else {unit: v.value for unit, v in values.items()}
        # ordered now while the day rollups are still being read `beside` (a live board's
        # rollups take longer than its counters): only the ranks then wait for them
        ordering = asyncio.ensure_future(asyncio.to_thread(_ordered, campaign, targeted, now, at))
        rolled = await (
            rolling
            if rolling is not None
            else days.rolled_at(conn, campaign, indicator, [c.unit for c in counters], moments)
        )
    except BaseException:
        if ordering is not None:
            ordering.cancel()  # a read failed: the order is not waited for
        raise
    finally:
        if rolling is not None and not rolling.done():
            rolling.cancel()  # the counters' read failed: the other is not waited for
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await rolling
    previous: dict[str, int] = {}
    if rolled_then:
        assert previous_at is not None
        then = rolled[-1].values(indicator, live_values)
        previous = await asyncio.to_thread(
            lambda: ranks(rank_keys(campaign, targeted, then, previous_at))
        )
    elif ranked_then:
        assert previous_at is not None
        # the ranks then from the history, of the board's units as they stood then: on
        # its own tree, as a live board's day rollups keep them (a board after a cut-over
        # ranks its new communes a week before it too)
        judged = [c.as_counter() for c in targeted]
        before = await judge_counters(
            conn,
            campaign,
            indicator,
            judged,
            previous_at,
            live=False,
            tree_at=campaign.reports_on(at),
        )
        previous = ranks([rank_key(v) for v in before.values() if is_judged(v.progress.target)])
    # a unit's value a window ago is its run rate's, which only the rows shown need
    ago = rolled[0].values_when_asked(indicator, live_values) if window is not None else None
    placed = await asyncio.to_thread(_placed, targeted, await ordering, previous)
    return Ranking(placed, campaign, indicator, at, live, values, ago)


async def days_behind(
    conn: Connection, ranking: Ranking, standings: Sequence[Standing]
) -> dict[str, int]:
    """Each of `standings`' units behind now: its days behind in a row (`streaks`); the
    others are not in it (0). Reads the day rollups of those units only."""
    campaign = ranking.campaign
    behind = [s.verdict for s in standings if is_behind(s.verdict, campaign.thresholds.behind)]
    ends = day_ends(ranking.at, campaign)
    if not behind or not ends:
        return dict.fromkeys((v.unit for v in behind), 1)
    # a live board's units behind have their live value as their value now
    current = await _live_values(conn, campaign, behind, ranking.live)
    changes = await days.day_changes(conn, campaign, ranking.indicator, list(current), ends[-1])
    if len(behind) < OFF_LOOP:
        return streaks(campaign, behind, ends, current, changes)
    return await asyncio.to_thread(streaks, campaign, behind, ends, current, changes)


def _ordered(
    campaign: Campaign, targeted: Sequence[Ranked], now: Mapping[str, int], at: datetime
) -> list[tuple[float, float, str]]:
    """The rank keys (`rank_keys`) of the counters with a target at `at`, best first (`now`:
    their values then; a unit missing has 0)."""
    return sorted(rank_keys(campaign, targeted, now, at))


def _placed(
    targeted: Sequence[Ranked],
    order: Sequence[tuple[float, float, str]],
    previous: Mapping[str, int],
) -> list[Placed]:
    """The counters in rank order (`order`: `_ordered`), each with its rank then
    (`previous`)."""
    by_unit = {c.unit: c for c in targeted}
    return [
        Placed(rank, by_unit[key[2]], previous.get(key[2]))
        for rank, key in enumerate(order, start=1)
    ]
