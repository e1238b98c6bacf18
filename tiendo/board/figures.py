"""Figures and status of units at a moment, live (counters) or as of the past (history).

Every reader judges through `judge` (some units of one indicator) or `judge_campaign`
(every targeted key of a campaign), and ranks through `rank_key`: one rule, one room."""

import asyncio
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from tiendo import counting
from tiendo.board import days, repository
from tiendo.board.campaign import Campaign
from tiendo.board.plans import earlier_plan
from tiendo.board.repository import Counter, Place, Ranked
from tiendo.board.window import Reach, WindowValues
from tiendo.counting import ValueAt, reach
from tiendo.database import Connection
from tiendo.pace import (
    Moment,
    Progress,
    assess_at,
    is_done,
    moment,
    run_rate_window,
    standing_at,
)

# Judging this many units takes milliseconds of a core: in a worker thread, so that the
# event loop serves other reads meanwhile (fewer are not worth the hop).
OFF_LOOP = 1000


@dataclass(frozen=True, slots=True)
class Verdict(Place):
    """One (unit, indicator) of a campaign judged at a moment."""

    deadline: datetime  # the unit's own, else the campaign's
    progress: Progress
    last_event_at: datetime | None


def _window_start(campaign: Campaign, at: datetime) -> datetime | None:
    """Where the run-rate window of `at` starts (None: no window yet)."""
    window = run_rate_window(campaign.plan(0, 0), at)
    return None if window is None else min(at, campaign.deadline) - window


def _reach_day(campaign: Campaign, start: datetime) -> date:
    """The last local day whose change moves the units' values at a window's `start` as
    the day rollups give them (`days.values_at`): its own day, whose change is shared out
    by the moment. A window that starts at the campaign's start has the values the days'
    changes all come after, which no batch moves (nothing before the start counts): the
    day before it, on which only what moves every day is counted (`tiendo.counting.reach`)."""
    if start <= campaign.starts_at:
        return days.local_day(campaign, campaign.starts_at) - timedelta(days=1)
    return days.local_day(campaign, start)


async def _reached(
    conn: Connection, campaign: Campaign, at: datetime, cache: WindowValues | None
) -> Reach | None:
    """What `cache`'s values of the window of `at` are kept under (`WindowValues.fresh`);
    None: nothing to keep (no cache, no window yet). Read before the counters and the
    rollups the values come from: a transaction committed after it is then seen at the
    next read, whether or not the values saw it."""
    start = _window_start(campaign, at) if cache is not None else None
    if start is None:
        return None
    day = _reach_day(campaign, start)
    return Reach(day, await reach.reached(conn, campaign.id, day))


async def _window_ago(
    conn: Connection,
    campaign: Campaign,
    wanted: Mapping[str, Sequence[Counter]],
    at: datetime,
    cache: WindowValues | None,
    reached: Reach | None,
    refresh: bool = False,
) -> dict[str, dict[str, int] | None]:
    """Per indicator, each wanted unit's value at the start of the run-rate window (None:
    no window yet), from its live value and the day rollups (`tiendo.board.days`): never
    from the event history, live or `as_of` alike, so both judge a moment the same way.
    `cache` is read and filled only with `reached` (`_reached`, read before `wanted`):
    values kept under it are reused if no transaction has counted under their days since
    (`tiendo.counting.reach`), and those read now are kept under it."""
    start = _window_start(campaign, at)
    if start is None:
        return dict.fromkeys(wanted)
    fresh: set[str] = set()
    if cache is not None and reached is not None and not refresh:
        fresh = {
            indicator
            for indicator, counters in wanted.items()
            if cache.fresh(
                (campaign.id, indicator),
                tuple(c.unit for c in counters),
                at,
                reached.of(indicator),
            )
        }
        if fresh:
            # and still so now that the counters are read: a batch committed since
            # `reached` was read may be in their live values, and is in no kept value
            since = Reach(reached.day, await reach.reached(conn, campaign.id, reached.day))
            fresh = {i for i in fresh if since.of(i) == reached.of(i)}
    out: dict[str, dict[str, int] | None] = {}
    missing: dict[str, dict[str, int]] = {}
    for indicator, counters in wanted.items():
        if cache is not None and indicator in fresh:
            out[indicator] = cache.get((campaign.id, indicator))
        else:
            missing[indicator] = {c.unit: c.value for c in counters}
    if missing:
        found = await days.values_at(conn, campaign, missing, start)
        for indicator, ago in found.items():
            if cache is not None and reached is not None:
                cache.keep((campaign.id, indicator), tuple(ago), at, ago, reached.of(indicator))
            out[indicator] = ago
    return out


def judge_one(
    campaign: Campaign, c: Counter, now: ValueAt, value_window_ago: int | None, at: datetime
) -> Verdict:
    """One counter judged at `at` with its value then (`now`) and a run-rate window ago
    (None: no window yet): pure, the step every reader's figures go through."""
    return _verdict(campaign, c, moment(campaign.plan(0, 0, c.deadline), at), now, value_window_ago)


def _verdict(
    campaign: Campaign, c: Counter, when: Moment, now: ValueAt, value_window_ago: int | None
) -> Verdict:
    progress = assess_at(
        when,
        c.baseline,
        c.target,
        now.value,
        last_event_at=now.last_event_at,
        value_window_ago=value_window_ago,
        thresholds=campaign.thresholds,
    )
    return Verdict(
        campaign.id,
        c.unit,
        c.unit_name,
        c.level,
        c.parent,
        c.indicator,
        c.deadline or campaign.deadline,
        progress,
        now.last_event_at,
    )


def moments_at(campaign: Campaign, at: datetime) -> Callable[[datetime | None], Moment]:
    """The plan's window at `at` of a unit by its own deadline (None: the campaign's),
    worked out once per deadline: most units share the campaign's."""
    known: dict[datetime | None, Moment] = {}

    def of(deadline: datetime | None) -> Moment:
        when = known.get(deadline)
        if when is None:
            when = known[deadline] = moment(campaign.plan(0, 0, deadline), at)
        return when

    return of


def rank_keys(
    campaign: Campaign, counters: Sequence[Ranked], values: Mapping[str, int], at: datetime
) -> list[tuple[float, float, str]]:
    """`rank_order` of each counter judged at `at` with its value then (`values`; a unit
    missing has 0): what `judge_many` would rank them by, without the figures a rank does
    not need (the ranks at a previous briefing of ten thousand units)."""
    when = moments_at(campaign, at)
    return [
        rank_order(
            *standing_at(when(c.deadline), c.baseline, c.target, values.get(c.unit, 0)), c.unit
        )
        for c in counters
    ]


def judge_many(
    campaign: Campaign,
    counters: Sequence[Counter],
    values: Mapping[str, ValueAt],
    ago: Mapping[str, int] | None,
    at: datetime,
) -> dict[str, Verdict]:
    """`judge_one` of each counter (a unit missing from `values` has 0 and never reported,
    from `ago` 0; `ago` None: no run-rate window yet), the plan's window worked out once
    per deadline rather than once per unit."""
    when = moments_at(campaign, at)
    out: dict[str, Verdict] = {}
    nothing = ValueAt(0, None)
    for c in counters:
        out[c.unit] = _verdict(
            campaign,
            c,
            when(c.deadline),
            values.get(c.unit, nothing),
            ago.get(c.unit, 0) if ago is not None else None,
        )
    return out


class LiveValues(Mapping[str, ValueAt]):
    """Each counter's live value and last report, made when looked up: a live leaderboard
    ranks ten thousand units by their values alone and judges only the rows it shows."""

    __slots__ = ("_by_unit",)

    def __init__(self, counters: Sequence[Ranked]) -> None:
        self._by_unit = {c.unit: c for c in counters}

    def __getitem__(self, unit: str) -> ValueAt:
        c = self._by_unit[unit]
        return ValueAt(c.value, c.last_event_at)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_unit)

    def __len__(self) -> int:
        return len(self._by_unit)


async def values_of(
    conn: Connection,
    campaign: Campaign,
    indicator: str,
    counters: Sequence[Ranked],
    at: datetime,
    live: bool,
    tree_at: datetime | None = None,
) -> Mapping[str, ValueAt]:
    """The counters' values at `at`: live, or from history on the tree of `at` (or of
    `tree_at`: a board's units at an earlier moment, its previous ranks)."""
    if live:
        return LiveValues(counters)
    return await repository.values_as_of(
        conn,
        campaign.id,
        indicator,
        [c.unit for c in counters],
        campaign.starts_at,
        min(at, campaign.deadline),
        tree_at=tree_at,
    )


async def judge(
    conn: Connection,
    campaign: Campaign,
    indicator: str,
    codes: Sequence[str],
    at: datetime,
    *,
    live: bool,
    window: WindowValues | None = None,
    plan: repository.Plan | None = None,
) -> dict[str, Verdict]:
    """Figures and status of each unit in `codes` for one indicator at `at`.

    `live` reads the maintained counters (as of now); otherwise values come from history,
    judged by the plan of the tree of `at` (`plan`, or `plans.earlier_plan` read here: the
    counters hold their own tree's). The value a run-rate window ago comes from the day
    rollups, live or not (`window`: where such values are cached).
    """
    reached = await _reached(conn, campaign, at, window)
    counters = await repository.counters_of(conn, campaign.id, indicator, codes)
    if not live:
        if plan is None:
            plan = await earlier_plan(conn, campaign, at, [indicator])
        counters = repository.on_plan(counters, plan)
    return await judge_counters(
        conn, campaign, indicator, counters, at, live=live, window=window, reached=reached
    )


async def judge_now(
    conn: Connection, campaign: Campaign, indicator: str, codes: Sequence[str], now: datetime
) -> dict[str, Verdict]:
    """`judge` of now as every reader of now must: the live counters, or, while they are not
    on the tree the campaign reports on (a cut-over's first moments, a move that fails),
    `as_of` now on that tree with its plan, as the read API does. Live equals history."""
    return await judge(conn, campaign, indicator, codes, now, live=campaign.counters_on_tree(now))


async def judge_counters(
    conn: Connection,
    campaign: Campaign,
    indicator: str,
    counters: Sequence[Counter],
    at: datetime,
    *,
    live: bool,
    window: WindowValues | None = None,
    reached: Reach | None = None,
    tree_at: datetime | None = None,
) -> dict[str, Verdict]:
    """`judge` of counters the caller has read already (`tree_at`: see `values_of`), with
    `window`'s values kept under `reached` (read before them)."""
    values = await values_of(conn, campaign, indicator, counters, at, live, tree_at)
    ago = await _window_ago(conn, campaign, {indicator: counters}, at, window, reached)
    if len(counters) < OFF_LOOP:
        return judge_many(campaign, counters, values, ago[indicator], at)
    return await asyncio.to_thread(judge_many, campaign, counters, values, ago[indicator], at)


def is_judged(target: int) -> bool:
    """Whether the campaign judges a (unit, indicator) of its tree with this target: a
    positive one (set, summed up or carried), as the leaderboard ranks, the alerts judge
    (`SELECT_TARGETED`), the per-unit metrics export and the per-level counts and a
    parent's `children_total` count. Any other (outside a push limited to some units, a
    version closed by a cut-over, one of a tree not in force yet) is at 0 of 0, which
    `is_done` would call done."""
    return target > 0


@dataclass(frozen=True, slots=True)
class UnitFigures:
    """One indicator of a unit's progress: its verdict, and of its children the campaign
    judges (`is_judged`), how many and how many are done (`pace.is_done`, what their
    status would say)."""

    verdict: Verdict
    children_total: int
    children_done: int


async def judge_indicators(
    conn: Connection,
    campaign: Campaign,
    indicators: Sequence[str],
    unit: str,
    children: Sequence[str],
    at: datetime,
    *,
    live: bool,
    plan: repository.Plan | None = None,
) -> dict[str, UnitFigures]:
    """A unit's progress in several indicators at once, with its children's done counts:
    one read of the counters and one of the day rollups for all of them rather than one
    each. Only the unit is judged: a child's status `done` needs its value and target, not
    its run rate (the country's 8 × 63 provinces were most of its live read).
    `plan`: the targets and baselines of an earlier tree (`repository.on_plan`)."""
    read = await repository.counters_of_indicators(conn, campaign.id, indicators, [unit, *children])
    own: dict[str, list[Counter]] = {i: [] for i in indicators}
    kids: dict[str, list[Counter]] = {i: [] for i in indicators}
    for c in repository.on_plan(read, plan):
        (own if c.unit == unit else kids)[c.indicator].append(c)
    ago = await _window_ago(conn, campaign, own, at, None, None)
    then: dict[tuple[str, str], ValueAt] = {}
    if not live:
        roots = sorted({c.unit for c in read})
        # all indicators in one read: the rollup form's per-unit work (lineage, anchor) is
        # the same for each, and eight reads of the country were eight times it
        then = await counting.as_of(
            conn, campaign.id, indicators, roots, campaign.starts_at, min(at, campaign.deadline)
        )
    nothing = ValueAt(0, None)

    def value(c: Counter) -> ValueAt:
        return (
            ValueAt(c.value, c.last_event_at) if live else then.get((c.indicator, c.unit), nothing)
        )

    out: dict[str, UnitFigures] = {}
    for indicator, counters in own.items():
        if not counters:
            continue
        verdict = judge_many(campaign, counters, {unit: value(counters[0])}, ago[indicator], at)[
            unit
        ]
        judged = [c for c in kids[indicator] if is_judged(c.target)]
        done = sum(is_done(value(c).value, c.target) for c in judged)
        out[indicator] = UnitFigures(verdict, len(judged), done)
    return out


async def judge_campaign(
    conn: Connection,
    campaign: Campaign,
    at: datetime,
    *,
    live: bool,
    window: WindowValues | None = None,
    refresh: bool = False,
) -> list[Verdict]:
    """Every (unit, indicator) the campaign judges (`is_judged`), including units that
    never reported, judged at `at`. `refresh`: compute the run-rate start values anew
    (and keep them in `window`) even if kept ones are young: a full pass is exact, where
    kept values are those of a window that started minutes earlier. Kept values are
    reused only while no transaction has changed the days they came from (`_reached`)."""
    reached = await _reached(conn, campaign, at, window)
    by_indicator: dict[str, list[Counter]] = {}
    for c in await repository.targeted(conn, campaign.id):
        by_indicator.setdefault(c.indicator, []).append(c)
    ago = await _window_ago(conn, campaign, dict(by_indicator), at, window, reached, refresh)
    out: list[Verdict] = []
    for indicator, counters in by_indicator.items():
        values = await values_of(conn, campaign, indicator, counters, at, live)
        out.extend(judge_many(campaign, counters, values, ago[indicator], at).values())
    return out


def rank_order(pct: float | None, pace: float | None, unit: str) -> tuple[float, float, str]:
    """By pct, ties by higher pace, then by code (contract §4.3); unknown figures rank last."""
    return (
        -pct if pct is not None else math.inf,
        -pace if pace is not None else math.inf,
        unit,
    )


def rank_key(v: Verdict) -> tuple[float, float, str]:
    """`rank_order` of a verdict."""
    return rank_order(v.progress.pct, v.progress.pace, v.unit)


def ranks(keys: Sequence[tuple[float, float, str]]) -> dict[str, int]:
    """Each unit's rank (1: best) among `keys` (`rank_order`'s)."""
    return {key[2]: rank for rank, key in enumerate(sorted(keys), start=1)}


def ranked(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """A leaderboard: best first."""
    return sorted(verdicts, key=rank_key)


def bottom(ranking: Sequence[Verdict], n: int) -> list[tuple[int, Verdict]]:
    """The `n` lowest of a leaderboard (rank, verdict), leaving out units that reached
    their target (`is_done`, what their status says; not `pct`, which a float rounds to 100
    just short of a large target): a unit that is done is never called a laggard, however
    it ranks."""
    if n <= 0:
        return []
    first = max(len(ranking) - n, 0)
    return [
        (rank, v)
        for rank, v in enumerate(ranking[first:], start=first + 1)
        if not is_done(v.progress.value, v.progress.target)
    ]
