"""Alert rule evaluation and the alert lifecycle: pure functions, time passed in."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from tiendo.pace import Plan, Thresholds, assess


class AlertState(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class UnitState:
    """The latest progress of one (campaign, unit, indicator), as the feed reported it."""

    campaign_id: str
    unit: str
    indicator: str
    value: int
    baseline: int
    target: int
    starts_at: datetime
    deadline: datetime
    last_event_at: datetime | None
    behind_threshold: float
    stale_after: timedelta

    @property
    def plan(self) -> Plan:
        return Plan(self.starts_at, self.deadline, self.baseline, self.target)


@dataclass(frozen=True, slots=True)
class Behind:
    holds: bool
    pace: float | None
    expected: float
    required_daily_rate: float | None


def behind(state: UnitState, at: datetime) -> Behind:
    """`behind`: not done, the campaign running, and pace below the campaign's threshold."""
    p = assess(
        state.plan,
        state.value,
        at,
        last_event_at=state.last_event_at,
        value_window_ago=None,
        thresholds=Thresholds(state.behind_threshold, state.stale_after),
    )
    holds = (
        state.value < state.target
        and state.starts_at < at
        and p.pace is not None
        and p.pace < state.behind_threshold
    )
    return Behind(holds, p.pace, p.expected, p.required_daily_rate)


@dataclass(frozen=True, slots=True)
class Alert:
    state: AlertState
    since: datetime
    fired_at: datetime | None = None
    resolved_at: datetime | None = None


class Change(StrEnum):
    NONE = "none"
    OPENED = "opened"  # became pending
    FIRED = "fired"
    RESOLVED = "resolved"  # was firing, condition cleared: tell the chief
    DROPPED = "dropped"  # was pending, condition cleared before `for`: nobody was told


def step(
    alert: Alert | None, holds: bool, at: datetime, for_: timedelta
) -> tuple[Alert | None, Change]:
    """Next state of one alert instance given whether its condition holds at `at`."""
    if alert is None or alert.state is AlertState.RESOLVED:
        if not holds:
            return alert, Change.NONE
        if for_ <= timedelta(0):
            return Alert(AlertState.FIRING, since=at, fired_at=at), Change.FIRED
        return Alert(AlertState.PENDING, since=at), Change.OPENED
    if alert.state is AlertState.PENDING:
        if not holds:
            return None, Change.DROPPED
        if at - alert.since >= for_:
            return Alert(AlertState.FIRING, since=alert.since, fired_at=at), Change.FIRED
        return alert, Change.NONE
    if holds:
        return alert, Change.NONE
    return (
        Alert(AlertState.RESOLVED, since=alert.since, fired_at=alert.fired_at, resolved_at=at),
        Change.RESOLVED,
    )
