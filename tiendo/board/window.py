"""A cache of each unit's value one run-rate window ago, for readers that judge every key
over and over (the metrics snapshot, the notifier)."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

Pair = tuple[str, str]  # (campaign, indicator)


@dataclass
class WindowValues:
    """Each unit's value one run-rate window ago, kept for `max_age`.

    Those values come from the day rollups (`tiendo.board.days`), a week of rows per unit;
    they came from the event history once, whose scan on every pass this cache was made
    for, and a pass over every key still reads a few hundred thousand rows. A window of
    days moved by minutes changes a run rate by well under a percent (5 minutes of 7 days:
    0.05 %). `max_age` 0 never reuses a value.
    """

    max_age: timedelta
    _kept: dict[Pair, tuple[datetime, frozenset[str], dict[str, int]]] = field(default_factory=dict)

    def fresh(self, key: Pair, units: tuple[str, ...], now: datetime) -> bool:
        """Whether values of every one of `units` are kept and young enough."""
        kept = self._kept.get(key)
        # abs: simulated time (tests, replays) may move backwards
        return kept is not None and kept[1].issuperset(units) and abs(now - kept[0]) < self.max_age

    def get(self, key: Pair) -> dict[str, int]:
        return self._kept[key][2]

    def keep(
        self, key: Pair, units: tuple[str, ...], now: datetime, values: dict[str, int]
    ) -> None:
        self._kept[key] = (now, frozenset(units), values)
