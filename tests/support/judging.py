"""One unit of one campaign for the rules' pure tests, judged as the board judges it:
`tiendo.board.figures.judge_one`, then `services.notifier.rules.held`."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.notifier.rules import Rule, held
from tiendo.board.campaign import Campaign
from tiendo.board.figures import judge_one
from tiendo.board.repository import Counter
from tiendo.counting import ValueAt
from tiendo.pace import Progress, Thresholds, run_rate_window


@dataclass(frozen=True, slots=True)
class Unit:
    campaign: Campaign
    counter: Counter


def unit(
    value: int,
    target: int,
    starts_at: datetime,
    deadline: datetime,
    last_event_at: datetime | None,
    *,
    behind_threshold: float = 0.9,
    stale_after: timedelta = timedelta(hours=12),
    code: str = "00004",
) -> Unit:
    campaign = Campaign(
        "c",
        "c",
        starts_at,
        deadline,
        "Asia/Ho_Chi_Minh",
        ("cccd_collected",),
        Thresholds(behind_threshold, stale_after),
        (),
    )
    counter = Counter(
        "c", code, code, 3, None, "cccd_collected", value, 0, target, None, last_event_at
    )
    return Unit(campaign, counter)


def conditions(
    u: Unit, at: datetime, value_window_ago: int | None, history_known: bool
) -> tuple[Progress, dict[Rule, bool]]:
    """Which of stale/behind/at_risk hold at `at`. `history_known` false: no value from
    the start of the run-rate window, so at_risk is not judged (during the campaign's
    first hour there is no window yet, and it holds as the status does)."""
    c = u.counter
    v = judge_one(u.campaign, c, ValueAt(c.value, c.last_event_at), value_window_ago, at)
    window_known = history_known or run_rate_window(u.campaign.plan(0, 0), at) is None
    return v.progress, held(v, u.campaign, at, window_known=window_known)


@dataclass(frozen=True, slots=True)
class Behind:
    holds: bool
    pace: float | None


def behind(u: Unit, at: datetime) -> Behind:
    p, holds = conditions(u, at, None, True)
    return Behind(holds[Rule.BEHIND], p.pace)
