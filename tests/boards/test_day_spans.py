"""Where the day rollups hold a moment's values exactly (`days.exact_at`): at a local day's
last instant and at the deadline, never inside a day or at its first instant; in every
zone, the days its clocks change included. A live board reads its previous ranks from
them only there, so an instant called exact that is not moved its arrows (live against
`as_of` now: tests/boards/test_rank_movement.py)."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from tiendo.board import days
from tiendo.board.campaign import Campaign
from tiendo.board.movement import week_before
from tiendo.pace import Thresholds

# Zones whose clocks change at midnight (Santiago goes back, Nuuk and Havana forward),
# at other hours (Berlin), never (Hà Nội), or by half an hour (Lord Howe).
ZONES = (
    "Asia/Ho_Chi_Minh",
    "America/Santiago",
    "America/Nuuk",
    "America/Havana",
    "Europe/Berlin",
    "Australia/Lord_Howe",
)
START = datetime(2023, 1, 1, tzinfo=UTC)
moments = st.datetimes(datetime(2023, 1, 2), datetime(2025, 12, 1), timezones=st.just(UTC))


def campaign(zone: str, deadline: datetime) -> Campaign:
    return Campaign("c", "c", START, deadline, zone, ("x",), Thresholds(), ())


def local_date(zone: str, at: datetime) -> date:
    return at.astimezone(ZoneInfo(zone)).date()


def first_instant(zone: str, day: date) -> datetime:
    """The first instant whose local date is `day`, found by bisection over instants: an
    oracle that knows nothing of how the code builds a day."""
    lo = datetime.combine(day, time(0), tzinfo=UTC) - timedelta(days=1)
    hi = lo + timedelta(days=2)
    while hi - lo > days.INSTANT:
        mid = lo + (hi - lo) / 2
        if local_date(zone, mid) >= day:
            hi = mid
        else:
            lo = mid
    return hi


# the days the clocks changed in these zones, and ordinary ones
changes = st.sampled_from(
    [
        date(2024, 4, 6),  # Santiago back at midnight (-03 to -04)
        date(2024, 4, 7),
        date(2024, 9, 8),  # Santiago forward at midnight
        date(2024, 3, 30),  # Nuuk forward (at -01 midnight, 2024)
        date(2024, 3, 10),  # Havana forward at midnight
        date(2024, 11, 3),  # Havana back
        date(2024, 3, 31),  # Berlin forward at 02:00
        date(2024, 4, 7),  # Lord Howe back half an hour
        date(2024, 6, 1),
    ]
)


@given(st.sampled_from(ZONES), changes, st.sampled_from([-2, -1, 0, 1]))
def test_exact_at_a_day_boundary_only_at_its_last_instant(
    zone: str, day: date, offset: int
) -> None:
    at = first_instant(zone, day) + offset * days.INSTANT
    c = campaign(zone, datetime(2026, 1, 1, tzinfo=UTC))
    # exact means nothing of `at`'s local date comes after it: the next instant is the
    # next day's
    assert days.exact_at(c, at) == (offset == -1)
    assert days.span(c, at).starts <= at < days.span(c, at).ends


@given(st.sampled_from(ZONES), moments, moments)
def test_exact_only_where_every_change_of_the_day_is_at_or_before(
    zone: str, at: datetime, deadline: datetime
) -> None:
    c = campaign(zone, deadline)
    exact = days.exact_at(c, at)
    if at >= deadline:
        assert exact
        return
    # what the rollups file under a day is what happens on its local date; exact means
    # nothing of `at`'s date comes after `at`: the next instant is another day's
    then = at + days.INSTANT
    assert exact == (local_date(zone, then) != local_date(zone, at))


@given(st.sampled_from(ZONES), moments)
def test_a_day_span_is_its_local_date_in_instants(zone: str, at: datetime) -> None:
    where = days.span(campaign(zone, datetime(2026, 1, 1, tzinfo=UTC)), at)
    assert where.starts <= at < where.ends
    assert local_date(zone, where.starts) == local_date(zone, where.ends - days.INSTANT)
    assert local_date(zone, where.starts - days.INSTANT) != local_date(zone, where.starts)
    assert local_date(zone, where.ends) != local_date(zone, where.ends - days.INSTANT)
    # a day is 23 to 25 hours long, counted in instants
    assert timedelta(hours=22) < where.ends - where.starts < timedelta(hours=26)
    assert days.exact_at(
        campaign(zone, datetime(2026, 1, 1, tzinfo=UTC)), where.ends - days.INSTANT
    )


@given(st.sampled_from(ZONES), moments)
def test_the_default_previous_briefing_is_exact_in_every_zone(zone: str, at: datetime) -> None:
    c = campaign(zone, datetime(2026, 1, 1, tzinfo=UTC))
    previous = week_before(c, at)
    assert days.exact_at(c, previous)
    # the end of the day a week earlier
    assert local_date(zone, previous) == local_date(zone, at - timedelta(days=7))
    assert local_date(zone, previous + days.INSTANT) != local_date(zone, previous)
    assert previous < at


def test_a_deadline_inside_a_day_counts_what_happens_at_it() -> None:
    # 10:00 in Hà Nội: a report at the deadline counts, so the instant before it is no
    # day's end, and the deadline itself is
    deadline = datetime(2023, 6, 30, 3, 0, tzinfo=UTC)
    c = campaign("Asia/Ho_Chi_Minh", deadline)
    assert not days.exact_at(c, deadline - days.INSTANT)
    assert days.exact_at(c, deadline)
    assert days.exact_at(c, deadline + timedelta(days=3))
