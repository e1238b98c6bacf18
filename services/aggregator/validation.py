"""One validation of a campaign (contract §7: reference data is validated before it is stored,
and a bad campaign can never stop counting for the others), and the checks across the rows
of an admin change (`repeats`, `parent_loops`).

`campaign_problems` is the only statement of what makes a campaign usable. The admin API
(and so the CLI, the demo and the benchmark, which go through `admin`) refuses a campaign
it finds problems in; the aggregator runs the same function over the stored campaigns and
leaves out of the apply those it finds problems in (`CampaignGuard`).
"""

import math
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from tiendo.board.campaign import ZONE_RULE, Campaign, campaign_zone_name

MIN_STALE_AFTER = timedelta(seconds=60)
TargetRef = tuple[int | None, str]


@dataclass(frozen=True, slots=True)
class Problem:
    field: str
    message: str
    index: int | None = None

    def __str__(self) -> str:
        where = self.field if self.index is None else f"[{self.index}].{self.field}"
        return f"{where}: {self.message}"

    def as_error(self) -> dict[str, object]:
        """The problem as an entry of a problem+json `errors` list."""
        return {"index": self.index, "field": self.field, "message": self.message}


def campaign_problems(
    campaign: Campaign,
    *,
    timezones: Collection[str],
    indicators: Collection[str],
    target_deadlines: Mapping[TargetRef, datetime] | None = None,
) -> list[Problem]:
    """Everything that makes `campaign` unusable; empty when it is fine.

    `timezones`: the zone names both Python and PostgreSQL know; `indicators`: the
    catalogue; `target_deadlines`: unit-specific deadlines by where they come from.
    """
    problems: list[Problem] = []
    if not campaign_zone_name(campaign.timezone):
        problems.append(Problem("timezone", f"{ZONE_RULE}, not {campaign.timezone!r}"))
    elif campaign.timezone not in timezones:
        problems.append(Problem("timezone", f"unknown time zone {campaign.timezone!r}"))
    window_ok = campaign.starts_at < campaign.deadline
    if not window_ok:
        problems.append(Problem("deadline", "must be after starts_at"))
    if not campaign.indicators:
        problems.append(Problem("indicators", "at least one indicator is needed"))
    problems.extend(
        Problem(f"indicators[{i}]", f"unknown indicator {code!r}")
        for i, code in enumerate(campaign.indicators)
        if code not in indicators
    )
    behind = campaign.thresholds.behind
    if math.isnan(behind) or not 0 < behind <= 1:
        problems.append(Problem("behind_threshold", "must be in (0, 1]"))
    if campaign.thresholds.stale_after < MIN_STALE_AFTER:
        problems.append(Problem("stale_after_seconds", "must be at least 60"))
    problems.extend(_milestone_problems(campaign, window_ok))
    for (index, where), deadline in (target_deadlines or {}).items():
        if window_ok and not campaign.starts_at < deadline <= campaign.deadline:
            problems.append(
                Problem(where, "a target's deadline must lie in the campaign window", index)
            )
    return problems


def _milestone_problems(campaign: Campaign, window_ok: bool) -> list[Problem]:
    problems: list[Problem] = []
    timed: list[tuple[datetime, float, int]] = []
    for i, m in enumerate(campaign.milestones):
        if math.isnan(m.fraction) or not 0 <= m.fraction <= 1:
            problems.append(Problem(f"milestones[{i}].fraction", "must be in [0, 1]"))
        if m.at.tzinfo is None:
            problems.append(Problem(f"milestones[{i}].at", "needs an offset"))
            continue
        if window_ok and not campaign.starts_at <= m.at <= campaign.deadline:
            problems.append(Problem(f"milestones[{i}].at", "must lie in the campaign window"))
        timed.append((m.at, m.fraction, i))
    timed.sort(key=lambda t: (t[0], t[2]))
    for (_, before, _), (_, after, i) in pairwise(timed):
        if after < before:
            problems.append(
                Problem(f"milestones[{i}].fraction", "fractions must not decrease in time order")
            )
    return problems


def repeats(keys: Sequence[Hashable]) -> list[tuple[int, int]]:
    """(position, position of its first listing) of every key listed again: in one upsert
    the last row would silently win, so which one was meant?"""
    first: dict[Hashable, int] = {}
    return [(i, first[k]) for i, k in enumerate(keys) if first.setdefault(k, i) != i]


def parent_loops(parents: Mapping[str, str | None]) -> list[list[str]]:
    """The loops of the child -> parent links, each a chain from its smallest code in which
    each unit's parent is the next (and the last's the first); units merely under a loop
    are in none."""
    loops: list[list[str]] = []
    done: set[str] = set()
    for start in sorted(parents):
        path: list[str] = []
        on_path: dict[str, int] = {}
        code: str | None = start
        while code is not None and code in parents and code not in done:
            if code in on_path:
                loop = path[on_path[code] :]
                first = loop.index(min(loop))
                loops.append(loop[first:] + loop[:first])
                break
            on_path[code] = len(path)
            path.append(code)
            code = parents[code]
        done.update(path)
    return sorted(loops)
