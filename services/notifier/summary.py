"""What one evaluation did: for logs, metrics, tests and replays."""

from dataclasses import dataclass, field
from datetime import datetime
from time import perf_counter

from services.notifier.rules import Change, Rule
from tiendo.board.recounting import Recounting
from tiendo.counting import Key


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One alert's step in an evaluation."""

    key: Key
    rule: Rule
    change: Change


@dataclass
class Summary:
    at: datetime
    changes: list[AlertChange] = field(default_factory=list)
    escalations: list[tuple[int, str, int]] = field(default_factory=list)
    messages: list[tuple[str, str, str]] = field(default_factory=list)  # key, recipient, kind
    # campaigns left out because judging them failed (tiendo.board.isolation)
    failed: set[str] = field(default_factory=set)
    # the rebuild the pass waited for, judging nothing (docs/alerts.md)
    recounting: Recounting | None = None
    # wall seconds of each step (load, judge, touch, lifecycle, escalate, groups, digests)
    seconds: dict[str, float] = field(default_factory=dict)

    def timed(self, step: str, since: float) -> float:
        """Add the time from `since` to `step`; returns now (the next step's start)."""
        now = perf_counter()
        self.seconds[step] = self.seconds.get(step, 0.0) + now - since
        return now
