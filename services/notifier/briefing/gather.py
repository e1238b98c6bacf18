"""Gather a briefing pack from the board (figures, ranks, movement) and the explanations.

Everything is read as of the briefing moment from history, so a pack rendered later, or
twice, shows the same figures the room saw."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.notifier.briefing.model import (
    MUST_EXPLAIN,
    CommitmentOutcome,
    Headline,
    IndicatorSection,
    Laggard,
    Pack,
    RankRow,
    Said,
    Series,
)
from services.notifier.explanations import (
    CommitmentCheck,
    ExplanationPolicy,
    came_due,
    check_commitment,
)
from services.notifier.ranks import on_tree
from services.notifier.repository import explanations as explanation_sql
from services.notifier.repository.explanations import Promised
from tiendo.board import movement
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.board.figures import Verdict, judge
from tiendo.board.movement import Standing
from tiendo.database import Connection
from tiendo.pace import Status, expected


def _row(s: Standing) -> RankRow:
    v = s.verdict
    return RankRow(
        s.rank,
        v.unit,
        v.unit_name,
        v.parent,
        v.progress,
        s.previous_rank,
        s.movement,
        s.days_behind,
    )


def laggards_of(standings: Sequence[Standing], bottom_n: int) -> list[Standing]:
    """Who must explain: every unit behind or stale, and the bottom N not yet done;
    lowest first."""
    last = len(standings) - bottom_n
    return [
        s
        for s in reversed(standings)
        if s.verdict.progress.status in MUST_EXPLAIN
        or (s.rank > last and s.verdict.progress.status is not Status.DONE)
    ]


async def daily_series(
    conn: Connection, campaign: Campaign, indicator: str, verdicts: Sequence[Verdict], at: datetime
) -> tuple[Series, ...]:
    """Each unit's value at the end of every campaign day up to `at`, and the plan's."""
    zone = ZoneInfo(campaign.timezone)
    end_at = min(at, campaign.deadline)
    first = campaign.starts_at.astimezone(zone).date() + timedelta(days=1)
    moments: list[datetime] = []
    day = first
    while (m := datetime.combine(day, datetime.min.time(), zone)) < end_at:
        moments.append(m)
        day += timedelta(days=1)
    moments.append(end_at)
    codes = [v.unit for v in verdicts]
    values: list[dict[str, int]] = []
    for m in moments:
        found = await board.values_as_of(conn, campaign.id, indicator, codes, campaign.starts_at, m)
        values.append({u: v.value for u, v in found.items()})
    out: list[Series] = []
    for v in verdicts:
        p = v.progress
        plan = campaign.plan(p.baseline, p.target, v.deadline)
        out.append(
            Series(
                unit=v.unit,
                unit_name=v.unit_name,
                # (each point at its own moment: as dates, the pack's moment, 08:00 on a
                # Monday, sat on Monday's midnight beside the value of then, and the line's
                # last step was drawn as a vertical jump)
                moments=tuple(m.astimezone(zone).replace(tzinfo=None) for m in moments),
                values=tuple(day_values.get(v.unit, 0) for day_values in values),
                planned=tuple(expected(plan, m) for m in moments),
                target=p.target,
                status=p.status,
            )
        )
    return tuple(out)


async def _outcomes(
    conn: Connection,
    campaign: Campaign,
    indicator: str,
    promised: Sequence[Promised],
    names: dict[str, str],
    since: datetime,
    at: datetime,
) -> tuple[CommitmentOutcome, ...]:
    """Every commitment that came due in (since, at] (`came_due`: whatever version was
    written after it), met or not. Its stored check is what its chief was told; one not
    checked yet (the pass that checks it has not run, or the campaign's checks are held
    back) is judged here at its due moment from history, as the check will judge it."""
    out: list[CommitmentOutcome] = []
    for p in promised:
        e = p.explanation
        if e.indicator != indicator:
            continue
        if p.checked is not None:
            due = p.checked.due_at
            checked = CommitmentCheck(p.checked.met, p.checked.value, p.checked.wanted)
        else:
            found = came_due(
                e.commitment, e.submitted_at, e.superseded_at, campaign.timezone, campaign.deadline
            )
            if found is None or not since < found <= at:
                continue
            due = found
            judged = await judge(conn, campaign, indicator, [e.unit], due, live=False)
            then = judged.get(e.unit)
            if then is None:
                continue
            checked = check_commitment(
                e.commitment,
                value_then=e.value_then,
                submitted_at=e.submitted_at,
                value_now=then.progress.value,
                pace_now=then.progress.pace,
                threshold=campaign.thresholds.behind,
                at=due,
            )
        if not since < due <= at:
            continue
        out.append(
            CommitmentOutcome(
                e.unit,
                names.get(e.unit, e.unit),
                indicator,
                e.commitment,
                due,
                checked.met,
                checked.value,
                checked.wanted,
            )
        )
    return tuple(sorted(out, key=lambda c: (c.unit, c.due_at)))


async def gather(
    conn: Connection,
    campaign: Campaign,
    *,
    level: int,
    at: datetime,
    previous_at: datetime,
    language: str,
    bottom_n: int,
    indicators: Sequence[str] | None = None,
) -> Pack:
    """The pack of the briefing at `at` for the units of `level`."""
    policy: ExplanationPolicy = await explanation_sql.policy(conn, campaign.id)
    explained = await explanation_sql.latest_explanations(conn, campaign.id, at)
    promised = await explanation_sql.commitments(conn, campaign.id, at)
    acked = await explanation_sql.acknowledged_keys(conn, campaign.id, previous_at, at)
    # the units and targets of the tree of `at`: a pack of a slot before a cut-over, asked
    # after the counters moved, shows the old tree's units (docs/units-over-time.md)
    plan, counters = await on_tree(conn, campaign, at)
    sections: list[IndicatorSection] = []
    for indicator in indicators or campaign.indicators:
        mine = [c for c in counters if c.indicator == indicator]
        top = sorted(c.unit for c in mine if c.level == min((c.level for c in mine), default=1))
        kids = sorted(c.unit for c in mine if c.parent in top)
        judged = await judge(conn, campaign, indicator, [*top, *kids], at, live=False, plan=plan)
        charted = [judged[u] for u in [*top, *kids] if u in judged]
        standings = await movement.leaderboard(
            conn, campaign, indicator, level, at, previous_at=previous_at, live=False, plan=plan
        )
        laggards = []
        for s in laggards_of(standings, bottom_n):
            e = explained.get((s.verdict.unit, indicator))
            said = None
            if e is not None:
                label = policy.cause(e.cause)
                said = Said(
                    label.label(language) if label else e.cause,
                    e.detail,
                    e.commitment,
                    e.version,
                    e.submitted_at,
                )
            laggards.append(Laggard(_row(s), said, (s.verdict.unit, indicator) in acked))
        names = {c.unit: c.unit_name for c in mine}
        sections.append(
            IndicatorSection(
                indicator=indicator,
                headline=Headline(
                    indicator, top[0], judged[top[0]].unit_name, judged[top[0]].progress
                )
                if top and top[0] in judged
                else None,
                series=await daily_series(conn, campaign, indicator, charted, at),
                ranking=tuple(_row(s) for s in standings),
                laggards=tuple(laggards),
                commitments=await _outcomes(
                    conn, campaign, indicator, promised, names, previous_at, at
                ),
            )
        )
    return Pack(
        campaign_id=campaign.id,
        campaign_name=campaign.name,
        timezone=campaign.timezone,
        at=at,
        previous_at=previous_at,
        level=level,
        language=language,
        sections=tuple(sections),
    )
