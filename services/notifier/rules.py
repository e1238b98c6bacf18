"""Alert rules, the alert lifecycle, escalation, grouping and schedules: pure functions over
plain data, the time always passed in (contract §5, §6; docs/alerts.md)."""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from tiendo.board.campaign import Campaign
from tiendo.board.figures import Verdict
from tiendo.pace import Status, is_done


class Rule(StrEnum):
    STALE = "stale"
    BEHIND = "behind"
    AT_RISK = "at_risk"
    BOTTOM_RANK = "bottom_rank"


# Each rule has its own alert and lifecycle; in messages the first of these firing on a
# (unit, indicator) inhibits the later ones, as the board shows one status per indicator.
PRECEDENCE = (Rule.STALE, Rule.BEHIND, Rule.AT_RISK)


class AlertState(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


def target_runs(v: Verdict, campaign: Campaign, at: datetime) -> bool:
    """Whether the target `v` is judged on still runs at `at`: the campaign has started and
    neither its deadline nor the unit's own has passed. Outside it no rule holds, the
    briefing's rank included (a unit past its own deadline closes all its alerts)."""
    return campaign.starts_at < at < v.deadline and not campaign.ended(at)


def ranked_alerted(v: Verdict, campaign: Campaign, at: datetime) -> bool:
    """Whether a unit the briefing ranked among the lowest is alerted for it at `at`: while
    its target runs, and only while it is not done. One that reaches its target after the
    briefing is no laggard, as the briefing itself never calls a done unit one
    (`figures.bottom`); before, its rank alert held all week, repeating and escalating."""
    return target_runs(v, campaign, at) and not is_done(v.progress.value, v.progress.target)


def held(
    v: Verdict, campaign: Campaign, at: datetime, *, window_known: bool = True
) -> dict[Rule, bool]:
    """Which of stale/behind/at_risk hold at `at` for the board's verdict `v`, before
    inhibition. Nothing holds once the deadline has passed: the campaign is over.

    `window_known` false (no value from the start of the run-rate window): `at_risk`
    cannot be judged and does not hold, no alert on missing data (contract §5)."""
    p = v.progress
    running = not is_done(p.value, p.target) and target_runs(v, campaign, at)
    projected_late = p.projected_completion is None or p.projected_completion > v.deadline
    slow = p.pace is not None and p.pace < campaign.thresholds.behind
    return {
        Rule.STALE: running and p.status is Status.STALE,
        Rule.BEHIND: running and slow,
        Rule.AT_RISK: running and window_known and projected_late,
    }


def inhibited_by(rule: str, firing: Iterable[str]) -> str | None:
    """The rule firing on the same (unit, indicator) that outranks `rule` in `PRECEDENCE`,
    if any: its alert still fires and shows, but its chief is told of the outranking one
    only (a silent unit is `stale`; it is not also told it is `behind`).

    `firing`: the rules whose alerts the chief could be told of, the silenced ones left
    out (`groups.sketch`): a silenced alert outranks nothing, or a silence of `stale`
    alone would hide the unit's `behind` too, and nobody would hear of it."""
    order = [r.value for r in PRECEDENCE]
    if rule not in order:
        return None
    for other in order[: order.index(rule)]:
        if other in firing:
            return other
    return None


def outranking() -> list[tuple[str, str]]:
    """Every (rule, rule that outranks it) as `inhibited_by` decides: the relation the
    planner's SQL pre-filter is handed as data (`groups.untold_members`), so that which rule
    outranks which is stated here only."""
    names = [r.value for r in Rule]
    return [(r, o) for r in names for o in names if inhibited_by(r, [o]) == o]


# --- lifecycle -----------------------------------------------------------------------------


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


def escalation_level(
    fired_at: datetime, at: datetime, escalate_after: timedelta, max_levels: int
) -> int:
    """How many levels up a firing alert should have reached by `at`: one per full
    `escalate_after` it has been firing, at most `max_levels` (0 when escalation is off)."""
    if escalate_after <= timedelta(0) or max_levels <= 0 or at < fired_at:
        return 0
    return min(max_levels, math.floor((at - fired_at) / escalate_after))


# --- bottom rank at the weekly briefing -----------------------------------------------------


def briefing_slot(at: datetime, tz: str, weekday: int, at_time: time) -> datetime:
    """The latest weekly briefing (`weekday`, 0 = Monday, at local `at_time`) at or before `at`."""
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    day = local.date() - timedelta(days=(local.weekday() - weekday) % 7)
    slot = datetime.combine(day, at_time, tzinfo=zone)
    if slot > local:
        slot = datetime.combine(day - timedelta(days=7), at_time, tzinfo=zone)
    return slot


def digest_slot(at: datetime, tz: str, times: Sequence[time], grace: timedelta) -> datetime | None:
    """The latest scheduled digest time at or before `at` (local `times` in `tz`), if it is
    at most `grace` old: a digest missed by more (the notifier was down) is skipped."""
    if not times:
        return None
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    candidates = [
        datetime.combine(d, t, tzinfo=zone)
        for d in (local.date(), local.date() - timedelta(days=1))
        for t in times
    ]
    past = [c for c in candidates if c <= local]
    if not past:
        return None
    slot = max(past)
    return slot if local - slot <= grace else None


# --- silences ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Silence:
    id: int
    starts_at: datetime
    ends_at: datetime
    campaign_id: str | None = None
    # a version's key (an official code was read when the silence was made): that version
    # and its whole subtree, as alerts and their ancestors name keys (docs/alerts.md)
    unit: str | None = None
    indicator: str | None = None
    rule: str | None = None

    def active(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at

    def matches(
        self, campaign_id: str, lineage: Sequence[str], indicator: str, rule: str, at: datetime
    ) -> bool:
        """Whether it mutes an alert; `lineage` is the alert's unit and its ancestors."""
        return (
            self.active(at)
            and self.campaign_id in (None, campaign_id)
            and (self.unit is None or self.unit in lineage)
            and self.indicator in (None, indicator)
            and self.rule in (None, rule)
        )


# --- grouping: one message per recipient -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    """One alert in one recipient's group."""

    alert_id: int
    level: int  # 0: the unit's own chief; n: escalated n levels up
    state: str  # "firing" or "resolved"
    changed_at: datetime
    notified: bool  # the recipient was told of it while firing
    silenced: bool = False
    inhibited: bool = False  # outranked by another firing rule on the same indicator

    @property
    def news(self) -> bool:
        """Something this recipient has not been told yet."""
        return (self.state == "firing") != self.notified

    @property
    def shown(self) -> bool:
        """Whether the recipient's messages list it: not silenced, and not a firing alert
        outranked by a visible one (a resolution is told even if it was outranked)."""
        return not self.silenced and not (self.inhibited and self.state == "firing")


@dataclass(frozen=True, slots=True)
class GroupState:
    seq: int = 0
    anchor_seq: int = 0
    anchor_at: datetime | None = None
    repeat_slot: int = 0


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """What one planning step of a group decides; `kind` None: no message now."""

    kind: str | None
    key: str | None
    group: GroupState
    firing: tuple[int, ...] = ()
    new: tuple[int, ...] = ()
    resolved: tuple[int, ...] = ()
    mark_notified: tuple[int, ...] = ()
    drop: tuple[int, ...] = ()
    due_at: datetime | None = None  # when a waiting change will be due


def listed_firing(members: Sequence[Member]) -> tuple[int, ...]:
    """The firing alerts a recipient's group messages list (`Member.shown`: not silenced,
    not outranked by a visible rule on the same key), escalated ones included: what a change
    message or a repeat lists, and what the recipient's digest counts. The one statement of
    it, for the planner and the digests alike."""
    return tuple(m.alert_id for m in members if m.shown and m.state == "firing")


def plan_group(
    group: GroupState,
    members: Sequence[Member],
    at: datetime,
    group_wait: timedelta,
    repeat_interval: timedelta,
) -> GroupPlan:
    """Decide whether the recipient gets a message now, and which.

    - a *change* message (kind `firing`, or `resolved` when nothing fires any more) once
      the oldest untold change is `group_wait` old, listing every firing alert and the
      ones resolved since the last message; its key is the group's next sequence number;
    - a *repeat* (kind `repeat`) in every full `repeat_interval` after the last change
      message while alerts fire, keyed by that message and the slot number;
    - silenced alerts, and firing alerts inhibited by a higher-precedence rule on the same
      indicator, are left out of both and never make a message due; a resolution the
      recipient was never told of (never told it fired, or silenced) is dropped unsaid.
    """
    visible = [m for m in members if m.shown]
    drop = tuple(
        m.alert_id for m in members if m.state == "resolved" and (not m.notified or m.silenced)
    )
    firing = listed_firing(members)
    news = [m for m in visible if m.news]
    if news:
        due_at = min(m.changed_at for m in news) + group_wait
        if at < due_at:
            return GroupPlan(None, None, group, drop=drop, due_at=due_at)
        seq = group.seq + 1
        resolved = tuple(m.alert_id for m in visible if m.state == "resolved")
        return GroupPlan(
            kind="firing" if firing else "resolved",
            key=str(seq),
            group=GroupState(seq=seq, anchor_seq=seq, anchor_at=at, repeat_slot=0),
            firing=firing,
            new=tuple(m.alert_id for m in news if m.state == "firing"),
            resolved=resolved,
            mark_notified=firing,
            drop=drop + resolved,
        )
    if firing and group.anchor_at is not None and repeat_interval > timedelta(0):
        slot = math.floor((at - group.anchor_at) / repeat_interval)
        if slot > group.repeat_slot:
            return GroupPlan(
                kind="repeat",
                key=f"{group.anchor_seq}.r{slot}",
                group=GroupState(group.seq, group.anchor_seq, group.anchor_at, slot),
                firing=firing,
                drop=drop,
            )
    return GroupPlan(None, None, group, drop=drop)
