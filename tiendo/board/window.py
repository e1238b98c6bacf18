"""A cache of each unit's value one run-rate window ago, for readers that judge every key
over and over (the metrics snapshot, the notifier)."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

Pair = tuple[str, str]  # (campaign, indicator)

# What a reader read of a pair's `history_reach` (`tiendo.counting.reach`) before the
# values it keeps: the window start's local day, and how many transactions had changed the
# day rollups on that day or an earlier one.
Reached = tuple[date, int]


@dataclass(frozen=True, slots=True)
class Reach:
    """A campaign's `history_reach` as a reader read it before its values: per indicator,
    how many transactions had changed the rollups on `day` or an earlier one."""

    day: date
    writes: Mapping[str, int]

    def of(self, indicator: str) -> Reached:
        """The indicator's (one no transaction has counted under those days: 0)."""
        return (self.day, self.writes.get(indicator, 0))


@dataclass(frozen=True, slots=True)
class _Kept:
    at: datetime
    units: frozenset[str]
    values: dict[str, int]
    reached: Reached | None


@dataclass
class WindowValues:
    """Each unit's value one run-rate window ago, kept for `max_age`, and only while no
    transaction has changed the days it was read from since.

    Those values come from the day rollups (`tiendo.board.days`), a week of rows per unit;
    they came from the event history once, whose scan on every pass this cache was made
    for, and a pass over every key still reads a few hundred thousand rows. A window of
    days moved by minutes changes a run rate by well under a percent (5 minutes of 7 days:
    0.05 %). A report dated before the window's start moves the value itself: the values
    are kept with what the reader read of `history_reach` before reading them (`reached`),
    and are fresh only under the same (`tiendo.counting.reach`). `max_age` 0 never reuses
    a value.
    """

    max_age: timedelta
    _kept: dict[Pair, _Kept] = field(default_factory=dict)

    def fresh(
        self, key: Pair, units: tuple[str, ...], now: datetime, reached: Reached | None = None
    ) -> bool:
        """Whether values of every one of `units` are kept, young enough, and kept under
        `reached` (what the reader has just read, before the values it would read)."""
        kept = self._kept.get(key)
        return (
            kept is not None
            and kept.reached == reached
            and kept.units.issuperset(units)
            # abs: simulated time (tests, replays) may move backwards
            and abs(now - kept.at) < self.max_age
        )

    def get(self, key: Pair) -> dict[str, int]:
        return self._kept[key].values

    def keep(
        self,
        key: Pair,
        units: tuple[str, ...],
        now: datetime,
        values: dict[str, int],
        reached: Reached | None = None,
    ) -> None:
        """Keep `values`, read after `reached` was."""
        self._kept[key] = _Kept(now, frozenset(units), values, reached)
