"""Values at past moments from the day rollups (`tiendo.counting.rollups`), for the figures
a live board needs from the past: the value one run-rate window ago, each day's end for the
days behind in a row, the ranks at the previous briefing, the daily bars.

A subtree's value at the end of local day D is its live value minus the changes of the
days after D: exact at every day's last instant (the rollups are exact for every day, in
any order of arrival), read from at most a campaign's days of rows per unit, never from
the events. Not at the midnight that follows: a report stamped at that very instant is
the next day's change, while `as_of` of the midnight counts it (`exact_at`). Inside a
day the value is interpolated linearly between the day's start and end (its part inside
the campaign's window): a run rate over seven days moved by a day's uneven hours changes
by at most that day's share of the change over the window.
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tiendo.board import repository
from tiendo.board.campaign import Campaign
from tiendo.database import Connection

# The shortest time between two moments: a timestamp's resolution (PostgreSQL's and
# Python's). A day's last instant is its end less this.
INSTANT = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class DaySpan:
    """The local day of a moment, and the part of it inside the campaign's window, as
    instants (UTC: arithmetic on a zone's datetimes is wall-clock arithmetic, an hour off
    on the days the clocks change)."""

    day: date
    starts: datetime
    ends: datetime
    closes_day: bool  # the span ends where its local day does (not at the deadline)

    def complete_at(self, at: datetime) -> bool:
        """Whether every change of the span is at or before `at`: from its end on (the
        deadline counts what happens at it), or from its day's last instant (what happens
        at the next midnight is the next day's)."""
        return at >= self.ends or (self.closes_day and at >= self.ends - INSTANT)

    def share(self, at: datetime) -> float:
        """How much of the span lies before `at`, in [0, 1]."""
        if self.ends <= self.starts or self.complete_at(at):
            return 1.0
        return min(1.0, max(0.0, (at - self.starts) / (self.ends - self.starts)))


def local_day(campaign: Campaign, at: datetime) -> date:
    """The campaign's local day of `at` (the day `subtree_days` files its events under)."""
    return at.astimezone(ZoneInfo(campaign.timezone)).date()


def day_start(campaign: Campaign, day: date) -> datetime:
    """The first instant of a local day (where clocks skip midnight, the instant they
    skip it at), in UTC."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(campaign.timezone)).astimezone(UTC)


def span(campaign: Campaign, at: datetime) -> DaySpan:
    day = local_day(campaign, at)
    starts, ends = day_start(campaign, day), day_start(campaign, day + timedelta(days=1))
    return DaySpan(
        day,
        max(starts, campaign.starts_at),
        min(ends, campaign.deadline),
        closes_day=ends <= campaign.deadline,
    )


def exact_at(campaign: Campaign, at: datetime) -> bool:
    """Whether the day rollups give every unit's value at `at` exactly, as `as_of` does:
    where the whole of its day's part in the campaign is at or before it (`complete_at`:
    a local day's last instant, the deadline). Inside a day they interpolate; and at a
    day's first instant (a local midnight) a report stamped at that very instant is filed
    under the day it starts, after the moment, where `as_of` counts it."""
    at = min(at, campaign.deadline)
    return span(campaign, at).complete_at(at)


def value_at(live: int, after: int, on_day: int, share: float) -> int:
    """The value at a moment of a day: the live value less the changes of the later days
    and the part of the day's change after the moment."""
    return live - after - round(on_day * (1.0 - share))


async def values_at(
    conn: Connection,
    campaign: Campaign,
    live: Mapping[str, Mapping[str, int]],
    at: datetime,
) -> dict[str, dict[str, int]]:
    """Per indicator, each unit's value at `at` from its live value (`live`: indicator →
    unit → value) and the day rollups."""
    where = span(campaign, min(at, campaign.deadline))
    share = where.share(min(at, campaign.deadline))
    units = sorted({u for values in live.values() for u in values})
    changes = await repository.changes_from(conn, campaign.id, list(live), units, where.day)
    return {
        indicator: _values(indicator, values, changes, share) for indicator, values in live.items()
    }


@dataclass(frozen=True, slots=True)
class Rolled:
    """What the day rollups say of units at a moment: (indicator, unit) → (the change over
    the days after the moment's day, over that day), and the share of the day before it."""

    changes: Mapping[tuple[str, str], tuple[int, int]]
    share: float

    def values(self, indicator: str, live: Mapping[str, int]) -> dict[str, int]:
        """Each unit's value at the moment from its live value (`live`: unit → value)."""
        return _values(indicator, live, self.changes, self.share)

    def values_when_asked(self, indicator: str, live: Mapping[str, int]) -> "RolledValues":
        """`values`, each worked out when it is looked up: a live leaderboard needs every
        unit's value a run-rate window ago only for the rows it shows."""
        return RolledValues(indicator, live, self)


class RolledValues(Mapping[str, int]):
    """`Rolled.values` as a mapping that works out a unit's value when it is looked up
    (the same `value_at` of the same live value and changes)."""

    __slots__ = ("_indicator", "_live", "_rolled")

    def __init__(self, indicator: str, live: Mapping[str, int], rolled: Rolled) -> None:
        self._indicator, self._live, self._rolled = indicator, live, rolled

    def __getitem__(self, unit: str) -> int:
        after, on_day = self._rolled.changes.get((self._indicator, unit), (0, 0))
        return value_at(self._live[unit], after, on_day, self._rolled.share)

    def __iter__(self) -> Iterator[str]:
        return iter(self._live)

    def __len__(self) -> int:
        return len(self._live)


async def rolled_at(
    conn: Connection,
    campaign: Campaign,
    indicator: str,
    units: Sequence[str] | int,
    moments: Sequence[datetime],
) -> list[Rolled]:
    """The rollups of one indicator's units (or of every unit of a level) at each of
    `moments`, read once per local day (a leaderboard's run-rate window and previous
    briefing are a week back both)."""
    codes = units if isinstance(units, int) else sorted(units)
    read: dict[date, dict[tuple[str, str], tuple[int, int]]] = {}
    out: list[Rolled] = []
    for at in moments:
        where = span(campaign, min(at, campaign.deadline))
        changes = read.get(where.day)
        if changes is None:
            changes = read[where.day] = await (
                repository.changes_from_level(conn, campaign.id, [indicator], codes, where.day)
                if isinstance(codes, int)
                else repository.changes_from(conn, campaign.id, [indicator], codes, where.day)
            )
        out.append(Rolled(changes, where.share(min(at, campaign.deadline))))
    return out


def _values(
    indicator: str,
    live: Mapping[str, int],
    changes: Mapping[tuple[str, str], tuple[int, int]],
    share: float,
) -> dict[str, int]:
    nothing = (0, 0)
    return {
        unit: value_at(value, *changes.get((indicator, unit), nothing), share)
        for unit, value in live.items()
    }


# Units' subtree changes per local day, latest first (days without one left out), each
# day as days after the first day read: a unit's value at the start of day D is its live
# value less the changes of the days from D on.
Changes = dict[str, tuple[list[int], list[int]]]


async def day_changes(
    conn: Connection, campaign: Campaign, indicator: str, units: Sequence[str], since: datetime
) -> Changes:
    """The units' changes per local day from `since`'s day on (`local_day(since)` is day 0):
    unit → (days, changes)."""
    first = local_day(campaign, since)
    return await repository.day_changes(conn, campaign.id, indicator, sorted(units), first)


async def daily_bars(
    conn: Connection, campaign: Campaign, unit: str, since: date
) -> list[tuple[date, str, int]]:
    """The unit's subtree counted increments per local day and indicator from `since`: the
    drill-down's bars (snapshots change the value, not these)."""
    return await repository.daily_increments(conn, campaign.id, unit, since)
