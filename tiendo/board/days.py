"""Values at past moments from the day rollups (`tiendo.counting.rollups`), for the figures
a live board needs from the past: the value one run-rate window ago, each day's end for the
days behind in a row, the ranks at the previous briefing, the daily bars.

A subtree's value at the end of local day D is its live value minus the changes of the
days after D: exact at every local midnight (for events that arrive in time order per key,
see the rollups' docstring), read from at most a campaign's days of rows per unit, never
from the events. Inside a day the value is interpolated linearly between the day's start
and end (its part inside the campaign's window): a run rate over seven days moved by a
day's uneven hours changes by at most that day's share of the change over the window.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tiendo.board import repository
from tiendo.board.campaign import Campaign
from tiendo.database import Connection


@dataclass(frozen=True, slots=True)
class DaySpan:
    """The local day of a moment, and the part of it inside the campaign's window."""

    day: date
    starts: datetime
    ends: datetime

    def share(self, at: datetime) -> float:
        """How much of the span lies before `at`, in [0, 1]."""
        if self.ends <= self.starts:
            return 1.0
        return min(1.0, max(0.0, (at - self.starts) / (self.ends - self.starts)))


def local_day(campaign: Campaign, at: datetime) -> date:
    """The campaign's local day of `at` (the day `subtree_days` files its events under)."""
    return at.astimezone(ZoneInfo(campaign.timezone)).date()


def span(campaign: Campaign, at: datetime) -> DaySpan:
    zone = ZoneInfo(campaign.timezone)
    day = at.astimezone(zone).date()
    starts = datetime.combine(day, time(0), tzinfo=zone)
    ends = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return DaySpan(day, max(starts, campaign.starts_at), min(ends, campaign.deadline))


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
    out: dict[str, dict[str, int]] = {}
    for indicator, values in live.items():
        out[indicator] = {
            unit: value_at(value, *changes.get((indicator, unit), (0, 0)), share)
            for unit, value in values.items()
        }
    return out


class DayEnds:
    """Units' values at local midnights, walked back from the latest: each step undoes
    the changes of the days it passes, for the units still asked about."""

    def __init__(
        self, campaign: Campaign, live: Mapping[str, int], rows: Sequence[tuple[str, date, int]]
    ) -> None:
        self._campaign = campaign
        self._live = live
        self._by_day: dict[date, list[tuple[str, int]]] = {}
        for unit, day, change in rows:
            self._by_day.setdefault(day, []).append((unit, change))
        self._days = sorted(self._by_day, reverse=True)
        self._taken = 0
        self._later: dict[str, int] = {}

    def move_to(self, end: datetime) -> None:
        """Walk back to `end` (ends come latest first): undo the changes of the days from
        its day on."""
        day = local_day(self._campaign, end)
        while self._taken < len(self._days) and self._days[self._taken] >= day:
            for u, change in self._by_day[self._days[self._taken]]:
                self._later[u] = self._later.get(u, 0) + change
            self._taken += 1

    def value(self, unit: str) -> int:
        """The unit's value at the end walked back to."""
        return self._live.get(unit, 0) - self._later.get(unit, 0)


async def day_ends(
    conn: Connection,
    campaign: Campaign,
    indicator: str,
    live: Mapping[str, int],
    since: datetime,
) -> DayEnds:
    """The units' (`live`: unit → live value) values at the local midnights from `since`."""
    first = local_day(campaign, since)
    rows = await repository.day_changes(conn, campaign.id, indicator, sorted(live), first)
    return DayEnds(campaign, live, rows)


async def daily_bars(
    conn: Connection, campaign: Campaign, unit: str, since: date
) -> list[tuple[date, str, int]]:
    """The unit's subtree counted increments per local day and indicator from `since`: the
    drill-down's bars (snapshots change the value, not these)."""
    return await repository.daily_increments(conn, campaign.id, unit, since)
