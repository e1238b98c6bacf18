"""The one campaign check: every problem listed, nothing flagged in a good campaign."""

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from services.aggregator.validation import TargetRef, campaign_problems
from tiendo.board.campaign import Campaign
from tiendo.pace import Milestone, Thresholds

START = datetime(2023, 5, 10, tzinfo=UTC)
DEADLINE = datetime(2023, 6, 30, tzinfo=UTC)
ZONES = {"Asia/Ho_Chi_Minh", "UTC"}
INDICATORS = {"cccd_collected", "eid_activated_l1"}


def campaign(**changes: object) -> Campaign:
    values: dict[str, object] = {
        "id": "c",
        "name": "c",
        "starts_at": START,
        "deadline": DEADLINE,
        "timezone": "Asia/Ho_Chi_Minh",
        "indicators": ("cccd_collected",),
        "thresholds": Thresholds(behind=0.9, stale_after=timedelta(hours=12)),
        "milestones": (),
    }
    values.update(changes)
    # each test overrides any field with a value of its own; the dict cannot say which
    return Campaign(**values)  # type: ignore[arg-type]


def fields(c: Campaign, target_deadlines: dict[TargetRef, datetime] | None = None) -> list[str]:
    problems = campaign_problems(
        c, timezones=ZONES, indicators=INDICATORS, target_deadlines=target_deadlines
    )
    return [p.field for p in problems]


offsets = st.integers(min_value=0, max_value=int((DEADLINE - START).total_seconds()))
fractions = st.floats(min_value=0, max_value=1)


@given(st.lists(st.tuples(offsets, fractions), max_size=8))
def test_milestones_inside_the_window_with_rising_fractions_are_fine(
    points: list[tuple[int, float]],
) -> None:
    ordered = sorted(points)
    rising = [(o, f) for (o, _), f in zip(ordered, sorted(f for _, f in ordered), strict=True)]
    milestones = tuple(Milestone(START + timedelta(seconds=o), f) for o, f in rising)
    assert fields(campaign(milestones=milestones)) == []


@given(st.lists(st.tuples(offsets, fractions), min_size=2, max_size=8, unique_by=lambda p: p[0]))
def test_a_fraction_falling_in_time_order_is_named(points: list[tuple[int, float]]) -> None:
    ordered = sorted(points)
    falls = any(after[1] < before[1] for before, after in pairwise(ordered))
    # listed in any order: the check sorts by time itself
    milestones = tuple(Milestone(START + timedelta(seconds=o), f) for o, f in reversed(ordered))
    problems = fields(campaign(milestones=milestones))
    assert bool(problems) == falls
    assert all(p.endswith(".fraction") for p in problems)


def test_every_problem_is_listed_at_once() -> None:
    bad = campaign(
        timezone="Asia/Hanoi_typo",
        indicators=("cccd_collected", "cccd_colected"),
        thresholds=Thresholds(behind=0.0, stale_after=timedelta(seconds=59)),
        milestones=(
            Milestone(START - timedelta(days=1), 0.1),
            Milestone(START + timedelta(days=1), 1.5),
        ),
    )
    late = {(3, "deadline"): DEADLINE + timedelta(seconds=1), (None, "t"): DEADLINE}
    assert fields(bad, target_deadlines=late) == [
        "timezone",
        "indicators[1]",
        "behind_threshold",
        "stale_after_seconds",
        "milestones[0].at",
        "milestones[1].fraction",
        "deadline",
    ]


def test_a_reversed_window_is_named_once_and_not_blamed_on_what_lies_in_it() -> None:
    reversed_window = campaign(
        starts_at=DEADLINE, deadline=START, milestones=(Milestone(START, 0.5),)
    )
    assert fields(reversed_window, target_deadlines={(None, "t"): START}) == ["deadline"]


def test_naive_milestones_and_nan_thresholds_are_refused_not_crashed_on() -> None:
    odd = campaign(
        thresholds=Thresholds(behind=float("nan"), stale_after=timedelta(hours=1)),
        milestones=(Milestone(datetime(2023, 6, 1), 0.5), Milestone(START, float("nan"))),
    )
    assert fields(odd) == ["behind_threshold", "milestones[0].at", "milestones[1].fraction"]
