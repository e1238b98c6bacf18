"""A campaign's reference data as a plain value: window, indicators, thresholds, plan."""

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from tiendo.pace import Milestone, Plan, Thresholds

# The names a campaign's time zone may take (docs/admin.md, *Time zones*): an IANA
# region/city zone, `UTC`, or a fixed `Etc/*` zone. Python (boards, messages) and
# PostgreSQL (day buckets) run in separate containers, each with its own tzdata, and must
# read the zone the same way: `localtime` is whatever each host is set to, `Factory` is no
# place, and the old non-geographic names (`US/Eastern`, `Japan`, `EST5EDT`) are links
# that distributions now ship apart (Debian's tzdata-legacy) or IANA may drop.
ZONE_REGIONS = (
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
)
_ZONE_PART = r"[A-Za-z0-9_+-]+"
_CAMPAIGN_ZONE = re.compile(
    rf"UTC|Etc/{_ZONE_PART}|(?:{'|'.join(ZONE_REGIONS)})/{_ZONE_PART}(?:/{_ZONE_PART})*"
)
ZONE_RULE = "must be an IANA region/city time zone (such as Asia/Ho_Chi_Minh), UTC or Etc/*"


def campaign_zone_name(name: str) -> bool:
    """Whether `name` is of a form a campaign's time zone may take (`ZONE_REGIONS`); whether
    the zone exists is asked of the zone databases apart."""
    return _CAMPAIGN_ZONE.fullmatch(name) is not None


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
        (or whose zone tzdata dropped, or names no place) is left out by every reader, never
        fatal to them. The aggregator flags it (`/readyz`, metric); the full check is its
        validation's."""
        if not campaign_zone_name(self.timezone):
            return False
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
