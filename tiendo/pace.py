"""Plan, pace, projection and status of one (campaign, unit, indicator): contract §5.

Plain functions over plain data, no clock of their own: the time being judged is always an
argument, so the aggregator (serving `as_of` queries) and the notifier (re-evaluating on a
clock, or replaying a past campaign) compute exactly the same verdicts.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import pairwise

RUN_RATE_WINDOW = timedelta(days=7)
RUN_RATE_MIN_WINDOW = timedelta(hours=1)
DAY = timedelta(days=1)
# The last moment a projection can name. A unit nearly stalled far from its target (one a
# week against millions still to go) projects past it: that is no projection (null, as at
# a rate of 0; `at_risk` all the same), not an overflow that fails the whole read.
LATEST_PROJECTION = datetime.max.replace(tzinfo=UTC)


class Status(StrEnum):
    DONE = "done"
    STALE = "stale"
    BEHIND = "behind"
    AT_RISK = "at_risk"
    ON_TRACK = "on_track"


@dataclass(frozen=True, slots=True)
class Milestone:
    """By `at`, `fraction` of the way from baseline to target should be done."""

    at: datetime
    fraction: float


@dataclass(frozen=True, slots=True)
class Plan:
    starts_at: datetime
    deadline: datetime  # the unit's own, else the campaign's: where the plan reaches target
    baseline: int
    target: int
    milestones: tuple[Milestone, ...] = ()
    # The campaign's deadline, after which nothing counts (None: `deadline`). A unit's own
    # deadline ends its plan, not its counting: its events count to the campaign's, so the
    # moment its value is of, its run rate's window, its projection's start and its silence
    # run to the campaign's deadline too.
    counts_until: datetime | None = None

    @property
    def counted_until(self) -> datetime:
        return self.deadline if self.counts_until is None else self.counts_until


@dataclass(frozen=True, slots=True)
class Thresholds:
    behind: float = 0.9
    stale_after: timedelta = timedelta(hours=12)


# Not frozen, though nothing changes one once made: a frozen dataclass's `__init__` sets
# each field through `object.__setattr__` (1.2 µs for these eleven, against 0.24 µs), and a
# full pass of the notifier or the metrics makes one per key, a hundred thousand a pass.
@dataclass(slots=True)
class Progress:
    value: int
    baseline: int
    target: int
    pct: float | None
    expected: float
    expected_pct: float | None
    pace: float | None
    run_rate_7d: float | None
    required_daily_rate: float | None
    projected_completion: datetime | None
    status: Status


def plan_fraction(plan: Plan, at: datetime) -> float:
    """Share of (target − baseline) the plan expects by `at`, in [0, 1]."""
    if at <= plan.starts_at:
        return 0.0
    if at >= plan.deadline:
        return 1.0
    if not plan.milestones:
        # the common plan, a straight line; evaluated for every unit on every clock tick
        return (at - plan.starts_at) / (plan.deadline - plan.starts_at)
    inside = sorted(
        (m.at, m.fraction) for m in plan.milestones if plan.starts_at < m.at < plan.deadline
    )
    points: Sequence[tuple[datetime, float]] = [
        (plan.starts_at, 0.0),
        *inside,
        (plan.deadline, 1.0),
    ]
    for (t0, f0), (t1, f1) in pairwise(points):
        if t0 <= at <= t1:
            span = (t1 - t0).total_seconds()
            share = (at - t0).total_seconds() / span if span > 0 else 1.0
            return min(1.0, max(0.0, f0 + (f1 - f0) * share))
    return 1.0


def expected(plan: Plan, at: datetime) -> float:
    """Plan value at `at`: linear (or piecewise linear through milestones) baseline → target."""
    return planned(plan.baseline, plan.target, plan_fraction(plan, at))


def planned(baseline: int, target: int, fraction: float) -> float:
    """The plan value `fraction` of the way from baseline to target."""
    return baseline + (target - baseline) * fraction


def run_rate_window(plan: Plan, at: datetime) -> timedelta | None:
    """The window w of run_rate_7d at `at`, or None while it is shorter than an hour."""
    window = min(RUN_RATE_WINDOW, min(at, plan.counted_until) - plan.starts_at)
    return window if window >= RUN_RATE_MIN_WINDOW else None


def run_rate(value_now: int, value_before: int, window: timedelta) -> float:
    """Per-day rate over `window`."""
    return (value_now - value_before) / (window / DAY)


@dataclass(frozen=True, slots=True)
class Moment:
    """What `assess` needs of a plan's window at a moment, the same for every unit whose
    plan has that window (a leaderboard judges ten thousand units of one or two windows):
    worked out once by `moment`, then each unit is plain arithmetic on its own figures."""

    plan: Plan  # the window and milestones; its baseline and target are not read
    at: datetime
    at_count: datetime  # min(at, plan.counted_until): nothing counts after it
    fraction: float  # plan_fraction at at_count
    window_days: float | None  # run_rate_window at at_count in days; None: no run rate yet
    days_left: float
    # Days from at_count to LATEST_PROJECTION: a projection further than that is null.
    # (Worked out here, once, rather than for each of a hundred thousand units a pass.)
    projection_days: float


def moment(plan: Plan, at: datetime) -> Moment:
    at_count = min(at, plan.counted_until)
    window = run_rate_window(plan, at_count)
    return Moment(
        plan=plan,
        at=at,
        at_count=at_count,
        fraction=plan_fraction(plan, at_count),
        window_days=window / DAY if window is not None else None,
        days_left=(plan.deadline - at) / DAY,
        projection_days=(LATEST_PROJECTION - at_count) / DAY,
    )


def assess(
    plan: Plan,
    value: int,
    at: datetime,
    *,
    last_event_at: datetime | None,
    value_window_ago: int | None,
    thresholds: Thresholds = Thresholds(),
) -> Progress:
    """Every derived figure and the status of one unit at `at` (contract §5).

    `value_window_ago` is the value at `at − run_rate_window(plan, at)`; None when the
    window is shorter than an hour (then there is no run rate yet).
    """
    return assess_at(
        moment(plan, at),
        plan.baseline,
        plan.target,
        value,
        last_event_at=last_event_at,
        value_window_ago=value_window_ago,
        thresholds=thresholds,
    )


def assess_at(
    when: Moment,
    baseline: int,
    target: int,
    value: int,
    *,
    last_event_at: datetime | None,
    value_window_ago: int | None,
    thresholds: Thresholds = Thresholds(),
) -> Progress:
    """`assess` of a unit whose plan is `when.plan`'s window with its own baseline and
    target: the one place the figures are derived."""
    exp = planned(baseline, target, when.fraction)  # expected(plan, at_count)
    pct, pace = pct_and_pace(value, target, exp)
    window_days = when.window_days
    rate = (
        (value - value_window_ago) / window_days  # run_rate over the window
        if window_days is not None and value_window_ago is not None
        else None
    )
    remaining = target - value
    days_left = when.days_left
    projected = None
    if remaining > 0 and rate is not None and rate > 0:
        days = remaining / rate
        if days < when.projection_days:
            projected = when.at_count + timedelta(days=days)
    return Progress(
        value,
        baseline,
        target,
        pct,
        exp,
        100.0 * exp / target if target else None,  # expected_pct
        pace,
        rate,
        max(remaining / days_left, 0.0) if days_left > 0 else None,  # required_daily_rate
        projected,
        _status(when, target, value, last_event_at, pace, projected, thresholds),
    )


def pct_and_pace(value: int, target: int, exp: float) -> tuple[float | None, float | None]:
    """The figures a ranking orders by: value as a percentage of the target, and value
    over the plan's expected value `exp` (None where there is no target, nothing expected)."""
    return (100.0 * value / target if target else None, value / exp if exp > 0 else None)


def standing_at(
    when: Moment, baseline: int, target: int, value: int
) -> tuple[float | None, float | None]:
    """`pct_and_pace` of a unit at `when` (what `assess_at` would say of them, without the
    run rate, projection and status a rank does not need)."""
    return pct_and_pace(value, target, planned(baseline, target, when.fraction))


def is_done(value: int, target: int) -> bool:
    """The `done` status's condition, which no other figure changes."""
    return value >= target


def _status(
    when: Moment,
    target: int,
    value: int,
    last_event_at: datetime | None,
    pace: float | None,
    projected: datetime | None,
    thresholds: Thresholds,
) -> Status:
    if is_done(value, target):
        return Status.DONE
    starts_at = when.plan.starts_at
    if when.at <= starts_at:
        # Nothing is expected before the start, so nobody can be late yet.
        return Status.ON_TRACK
    quiet_since = max(starts_at, last_event_at) if last_event_at else starts_at
    if when.at_count - quiet_since > thresholds.stale_after:
        return Status.STALE
    if pace is not None and pace < thresholds.behind:
        return Status.BEHIND
    if projected is None or projected > when.plan.deadline:
        return Status.AT_RISK
    return Status.ON_TRACK
