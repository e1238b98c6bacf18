"""A campaign's reference data as a plain value: window, indicators, thresholds, plan."""

import json
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
        )

    def plan(self, baseline: int, target: int, deadline: datetime | None = None) -> Plan:
        """The plan of one unit: the campaign's window and milestones, its own figures."""
        return Plan(
            starts_at=self.starts_at,
            deadline=deadline or self.deadline,
            baseline=baseline,
            target=target,
            milestones=self.milestones,
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

    def ended(self, at: datetime) -> bool:
        """Past the deadline nothing more counts, alerts close and nothing repeats."""
        return at >= self.deadline
