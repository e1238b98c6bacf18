"""A campaign's reference data as a plain value: window, indicators, thresholds, plan."""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from tiendo.pace import Milestone, Plan, Thresholds


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    name: str
    starts_at: datetime
    deadline: datetime
    timezone: str
    indicators: tuple[str, ...]
    thresholds: Thresholds
    milestones: tuple[Milestone, ...]
    # The tree its live counters are kept on (the boundary it starts at; None: before
    # every boundary), and the next boundary (None: none after it): `counters_on_tree`.
    tree_at: datetime | None = None
    tree_until: datetime | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "Campaign":
        milestones = tuple(
            Milestone(at=datetime.fromisoformat(m["at"]), fraction=float(m["fraction"]))
            for m in json.loads(row["milestones"])
        )
        return cls(
            id=row["id"],
            name=row["name"],
            starts_at=row["starts_at"],
            deadline=row["deadline"],
            timezone=row["timezone"],
            indicators=tuple(row["indicators"]),
            thresholds=Thresholds(behind=row["behind_threshold"], stale_after=row["stale_after"]),
            milestones=milestones,
            tree_at=row["tree_from"],
            tree_until=row["tree_until"],
        )

    def plan(self, baseline: int, target: int, deadline: datetime | None = None) -> Plan:
        """The plan of one unit: the campaign's window and milestones, its own figures."""
        return Plan(
            starts_at=self.starts_at,
            deadline=deadline or self.deadline,
            baseline=baseline,
            target=target,
            milestones=self.milestones,
            counts_until=self.deadline,
        )

    def judgeable(self) -> bool:
        """Whether its figures can be judged at all: a campaign stored before validation
        (or whose zone tzdata dropped) is left out by every reader, never fatal to them.
        The aggregator flags it (`/readyz`, metric); the full check is its validation's."""
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return False
        return self.starts_at < self.deadline

    def reports_on(self, at: datetime) -> datetime:
        """The moment whose tree the campaign reports on at `at`: its start before it
        starts, its deadline after it ends (docs/units-over-time.md)."""
        return min(max(at, self.starts_at), self.deadline)

    def counters_on_tree(self, at: datetime) -> bool:
        """Whether its live counters are on the tree it reports on at `at`. Not so from a
        cut-over's first moment until the aggregator moves them (`tree_check`, or a
        tree's load): live figures are then read as `as_of` `at` on the new tree, and the
        notifier waits, so that nobody reads the old tree's counters as now."""
        moment = self.reports_on(at)
        if self.tree_at is not None and moment < self.tree_at:
            return False
        return self.tree_until is None or moment < self.tree_until

    def leaves_tree(self, now: datetime) -> datetime | None:
        """The moment after `now` from which its live counters are no longer on the tree
        it reports on (`counters_on_tree`), if any: the next boundary, unless the campaign
        ends before it."""
        if self.tree_until is None or self.tree_until > self.deadline or self.tree_until <= now:
            return None
        return self.tree_until

    def ended(self, at: datetime) -> bool:
        """Past the deadline nothing more counts, alerts close and nothing repeats."""
        return at >= self.deadline


def moving(campaigns: Iterable[Campaign], at: datetime) -> set[str]:
    """The campaigns whose live counters are not on the tree they report on at `at`
    (`Campaign.counters_on_tree`): the aggregator moves them, the others wait for it."""
    return {c.id for c in campaigns if not c.counters_on_tree(at)}
