"""Pace, plan, projection and status at their edges (contract §5)."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiendo.pace import (
    LATEST_PROJECTION,
    Milestone,
    Plan,
    Status,
    Thresholds,
    assess,
    expected,
    plan_fraction,
    run_rate_window,
)

START = datetime(2023, 5, 10, tzinfo=UTC)
DEADLINE = datetime(2023, 6, 30, tzinfo=UTC)
PLAN = Plan(START, DEADLINE, baseline=1000, target=11000)


def at_day(days: float) -> datetime:
    return START + timedelta(days=days)


def test_plan_is_baseline_before_start_and_target_after_deadline() -> None:
    assert expected(PLAN, START - timedelta(days=3)) == 1000
    assert expected(PLAN, START) == 1000
    assert expected(PLAN, DEADLINE) == 11000
    assert expected(PLAN, DEADLINE + timedelta(days=30)) == 11000


def test_plan_is_linear_between_start_and_deadline() -> None:
    half = START + (DEADLINE - START) / 2
    assert expected(PLAN, half) == pytest.approx(6000)


def test_milestones_make_the_plan_piecewise_linear() -> None:
    plan = Plan(START, DEADLINE, 0, 100, milestones=(Milestone(at_day(10), 0.5),))
    assert expected(plan, at_day(5)) == pytest.approx(25)
    assert expected(plan, at_day(10)) == pytest.approx(50)
    later = at_day(10) + (DEADLINE - at_day(10)) / 2
    assert expected(plan, later) == pytest.approx(75)


def test_milestones_outside_the_window_are_ignored() -> None:
    plan = Plan(START, DEADLINE, 0, 100, milestones=(Milestone(at_day(-5), 0.9),))
    assert expected(plan, START + (DEADLINE - START) / 2) == pytest.approx(50)


@given(st.floats(min_value=-100, max_value=200))
def test_plan_fraction_stays_in_unit_interval(days: float) -> None:
    assert 0.0 <= plan_fraction(PLAN, at_day(days)) <= 1.0


def test_pace_is_null_while_nothing_is_expected() -> None:
    plan = Plan(START, DEADLINE, 0, 100)
    p = assess(plan, 0, START, last_event_at=None, value_window_ago=None)
    assert p.pace is None
    assert p.expected == 0


def test_before_start_nobody_is_behind() -> None:
    p = assess(PLAN, 0, START - timedelta(days=1), last_event_at=None, value_window_ago=None)
    assert p.status is Status.ON_TRACK
    assert p.run_rate_7d is None


def test_target_met_is_done_even_after_the_deadline_and_stale() -> None:
    p = assess(
        PLAN, 11000, DEADLINE + timedelta(days=5), last_event_at=START, value_window_ago=5000
    )
    assert p.status is Status.DONE
    assert p.projected_completion is None
    assert p.required_daily_rate is None


def test_zero_target_is_done_with_null_pct() -> None:
    p = assess(Plan(START, DEADLINE, 0, 0), 0, at_day(3), last_event_at=None, value_window_ago=0)
    assert p.status is Status.DONE
    assert p.pct is None


def test_quiet_unit_goes_stale_after_stale_after() -> None:
    p = assess(
        PLAN,
        2000,
        at_day(10),
        last_event_at=at_day(9),
        value_window_ago=1500,
        thresholds=Thresholds(stale_after=timedelta(hours=12)),
    )
    assert p.status is Status.STALE
    p = assess(PLAN, 2000, at_day(10), last_event_at=at_day(9.9), value_window_ago=1500)
    assert p.status is Status.BEHIND


def test_stale_counts_from_the_start_when_there_was_no_event() -> None:
    p = assess(PLAN, 1000, START + timedelta(hours=11), last_event_at=None, value_window_ago=1000)
    assert p.status is not Status.STALE
    p = assess(PLAN, 1000, START + timedelta(hours=13), last_event_at=None, value_window_ago=1000)
    assert p.status is Status.STALE


def test_behind_below_threshold() -> None:
    # day 25.5 of 51: expected 6000; 5300 is pace 0.883 < 0.9
    p = assess(PLAN, 5300, at_day(25.5), last_event_at=at_day(25.4), value_window_ago=4000)
    assert p.pace == pytest.approx(5300 / 6000)
    assert p.status is Status.BEHIND


def test_zero_run_rate_means_no_projection_and_at_risk() -> None:
    p = assess(PLAN, 6000, at_day(25.5), last_event_at=at_day(25.4), value_window_ago=6000)
    assert p.run_rate_7d == 0
    assert p.projected_completion is None
    assert p.status is Status.AT_RISK


def test_projection_and_required_rate() -> None:
    # 7-day window: 700 per day; 5000 remaining → 7.14 days from now
    now = at_day(25.5)
    p = assess(PLAN, 6000, now, last_event_at=now, value_window_ago=6000 - 4900)
    assert p.run_rate_7d == pytest.approx(700)
    assert p.projected_completion == now + timedelta(days=5000 / 700)
    assert p.required_daily_rate == pytest.approx(5000 / 25.5)
    assert p.status is Status.ON_TRACK


def test_projection_after_deadline_is_at_risk() -> None:
    now = at_day(50)
    p = assess(PLAN, 10_500, now, last_event_at=now, value_window_ago=10_500 - 70)
    assert p.projected_completion is not None
    assert p.projected_completion > DEADLINE
    assert p.status is Status.AT_RISK


def test_a_projection_past_any_date_is_none_and_at_risk() -> None:
    """Found by `make bench`'s reads (6 December 2026): a national target far off at a
    trickle projected past year 9999, and the read answered 500."""
    plan = Plan(START, DEADLINE, baseline=0, target=10**15)
    now = at_day(30)
    p = assess(plan, 1000, now, last_event_at=now, value_window_ago=999)
    assert p.run_rate_7d == pytest.approx(1 / 7)
    assert p.projected_completion is None
    assert p.status is not Status.ON_TRACK


@given(
    target=st.integers(min_value=1, max_value=10**15),
    value=st.integers(min_value=0, max_value=10**15),
    gained=st.integers(min_value=0, max_value=10**15),
    days=st.floats(min_value=-10, max_value=400),
)
def test_every_figure_has_a_projection_or_none(
    target: int, value: int, gained: int, days: float
) -> None:
    """Any figures a target (at most 10**15, as the admin API takes) allows: a projection
    after now and no later than `LATEST_PROJECTION`, or none; never an error. On track
    only with a projection by the deadline."""
    plan = Plan(START, DEADLINE, baseline=0, target=target)
    now = at_day(days)
    p = assess(plan, value, now, last_event_at=now, value_window_ago=value - gained)
    if p.projected_completion is not None:
        assert min(now, DEADLINE) <= p.projected_completion <= LATEST_PROJECTION
    if p.status is Status.ON_TRACK and now > START:
        assert p.projected_completion is not None
        assert p.projected_completion <= DEADLINE


def test_run_rate_window_grows_to_seven_days_and_needs_an_hour() -> None:
    assert run_rate_window(PLAN, START + timedelta(minutes=59)) is None
    assert run_rate_window(PLAN, START + timedelta(hours=2)) == timedelta(hours=2)
    assert run_rate_window(PLAN, at_day(20)) == timedelta(days=7)


def test_no_required_rate_at_or_after_the_deadline() -> None:
    p = assess(PLAN, 5000, DEADLINE, last_event_at=DEADLINE, value_window_ago=4000)
    assert p.required_daily_rate is None


@given(
    own_days=st.integers(1, 50),
    at_days=st.floats(0, 60),
    value=st.integers(0, 20_000),
    gained=st.integers(-500, 5_000),
    quiet_hours=st.one_of(st.none(), st.floats(0, 24 * 60)),
)
def test_a_units_own_deadline_ends_its_plan_not_its_counting(
    own_days: int, at_days: float, value: int, gained: int, quiet_hours: float | None
) -> None:
    """A unit's events count to the campaign's deadline whatever its own: the moment its
    value is of, so its run rate, projection and silence, are the campaign's. Judged on
    the window of its own deadline, a unit past it got a week's change over three days'
    window (23.3 a day against 10) and its silence stopped at its deadline."""
    own = Plan(START, at_day(own_days), 0, 10_000, counts_until=DEADLINE)
    campaigns = Plan(START, DEADLINE, 0, 10_000)
    at = at_day(at_days)
    last = at - timedelta(hours=quiet_hours) if quiet_hours is not None else None
    window = run_rate_window(campaigns, at)
    assert run_rate_window(own, at) == window
    ago = value - gained if window is not None else None
    mine = assess(own, value, at, last_event_at=last, value_window_ago=ago)
    theirs = assess(campaigns, value, at, last_event_at=last, value_window_ago=ago)
    assert mine.value == theirs.value
    assert mine.run_rate_7d == theirs.run_rate_7d
    assert mine.projected_completion == theirs.projected_completion
    assert (mine.status == Status.STALE) == (theirs.status == Status.STALE)
    # what its own deadline does change: the plan reaches the target there
    if at >= own.deadline:
        assert mine.expected == 10_000
        assert mine.required_daily_rate is None
        assert mine.status in (Status.DONE, Status.STALE, Status.BEHIND, Status.AT_RISK)
