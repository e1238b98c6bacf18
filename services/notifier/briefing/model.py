"""The weekly briefing pack as plain data: what every format (HTML, PDF, XLSX) shows."""

from dataclasses import dataclass
from datetime import datetime

from services.notifier.explanations import Commitment
from tiendo.pace import Progress, Status

# Who must explain (behind or stale): the pack marks them red, in its ranking and its chart.
MUST_EXPLAIN = frozenset({Status.BEHIND, Status.STALE})


@dataclass(frozen=True, slots=True)
class Headline:
    """One indicator of the top unit (the city) against its plan."""

    indicator: str
    unit: str
    unit_name: str
    progress: Progress


@dataclass(frozen=True, slots=True)
class Series:
    """A unit's value at the end of each campaign day and at the pack's moment (`moments`:
    local wall-clock times, each point where it was read), against the plan's; and its status
    as judged for the ranking beside the chart, which colours its line (the chart restates
    no threshold, so the two cannot disagree)."""

    unit: str
    unit_name: str
    moments: tuple[datetime, ...]
    values: tuple[int, ...]
    planned: tuple[float, ...]
    target: int
    status: Status

    @property
    def late(self) -> bool:
        return self.status in MUST_EXPLAIN


@dataclass(frozen=True, slots=True)
class RankRow:
    rank: int
    unit: str
    unit_name: str
    parent: str | None
    progress: Progress
    previous_rank: int | None
    movement: str
    days_behind: int


@dataclass(frozen=True, slots=True)
class Said:
    """What a laggard's chief wrote (the latest version by the briefing)."""

    cause: str  # the label, in the pack's language
    detail: str
    commitment: Commitment
    version: int
    submitted_at: datetime


@dataclass(frozen=True, slots=True)
class Laggard:
    row: RankRow
    said: Said | None  # None: did not explain
    acknowledged: bool


@dataclass(frozen=True, slots=True)
class CommitmentOutcome:
    """A commitment that came due since the previous briefing, and what happened."""

    unit: str
    unit_name: str
    indicator: str
    commitment: Commitment
    due_at: datetime
    met: bool
    value: int
    wanted: float


@dataclass(frozen=True, slots=True)
class IndicatorSection:
    indicator: str
    headline: Headline | None
    series: tuple[Series, ...]  # the top unit first, then each of its children
    ranking: tuple[RankRow, ...]
    laggards: tuple[Laggard, ...]
    commitments: tuple[CommitmentOutcome, ...]


@dataclass(frozen=True, slots=True)
class Pack:
    campaign_id: str
    campaign_name: str
    timezone: str
    at: datetime
    previous_at: datetime
    level: int
    language: str
    sections: tuple[IndicatorSection, ...]
