"""What one evaluation did: for logs, metrics, tests and replays."""

from dataclasses import dataclass, field
from datetime import datetime

from services.notifier.rules import Change

Key = tuple[str, str, str]  # (campaign, unit, indicator)


@dataclass
class Summary:
    at: datetime
    evaluated: int = 0
    changes: list[tuple[Key, str, Change]] = field(default_factory=list)
    escalations: list[tuple[int, str, int]] = field(default_factory=list)
    messages: list[tuple[str, str, str]] = field(default_factory=list)  # key, recipient, kind
    digests: int = 0
