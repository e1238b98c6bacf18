"""Progress of a unit (and its children) at a moment: counters + history + pace math."""

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.aggregator import repository
from services.aggregator.models import Campaign, IndicatorProgress
from tiendo.database import Connection
from tiendo.pace import Progress, Status, assess, run_rate_window


def _judge(
    campaign: Campaign,
    row: asyncpg.Record,
    value: int,
    last_event_at: datetime | None,
    value_window_ago: int | None,
    at: datetime,
) -> Progress:
    plan = campaign.plan(row["baseline"], row["target"], row["deadline"])
    return assess(
        plan,
        value,
        at,
        last_event_at=last_event_at,
        value_window_ago=value_window_ago,
        thresholds=campaign.thresholds,
    )


async def progress_of(
    conn: Connection,
    campaign: Campaign,
    unit: str,
    children: Sequence[str],
    at: datetime,
    *,
    live: bool,
) -> list[IndicatorProgress]:
    """Per indicator of the campaign: the unit's figures at `at`.

    `live` reads the maintained counters (as of now); otherwise values come from history.
    """
    codes = [unit, *children]
    rows = await conn.fetch(repository.SELECT_PROGRESS, campaign.id, codes)
    by_key = {(r["unit"], r["indicator"]): r for r in rows}
    out: list[IndicatorProgress] = []
    for indicator in campaign.indicators:
        own_row = by_key.get((unit, indicator))
        if own_row is None:
            continue
        present = [c for c in codes if (c, indicator) in by_key]
        if live:
            now_values = {
                c: repository.ValueAt(
                    by_key[c, indicator]["value"], by_key[c, indicator]["last_event_at"]
                )
                for c in present
            }
        else:
            now_values = await repository.values_as_of(
                conn,
                campaign.id,
                indicator,
                present,
                campaign.starts_at,
                min(at, campaign.deadline),
            )
        window = run_rate_window(campaign.plan(0, 0), at)
        before = (
            await repository.values_as_of(
                conn,
                campaign.id,
                indicator,
                present,
                campaign.starts_at,
                min(at, campaign.deadline) - window,
            )
            if window is not None
            else {}
        )
        verdicts: dict[str, Progress] = {}
        for code in present:
            now_value = now_values.get(code, repository.ValueAt(0, None))
            ago = before.get(code)
            verdicts[code] = _judge(
                campaign,
                by_key[code, indicator],
                now_value.value,
                now_value.last_event_at,
                ago.value if ago else (None if window is None else 0),
                at,
            )
        mine = verdicts[unit]
        kids = [verdicts[c] for c in children if c in verdicts]
        out.append(
            IndicatorProgress(
                indicator=indicator,
                value=mine.value,
                baseline=mine.baseline,
                target=mine.target,
                pct=mine.pct,
                expected=mine.expected,
                expected_pct=mine.expected_pct,
                pace=mine.pace,
                run_rate_7d=mine.run_rate_7d,
                required_daily_rate=mine.required_daily_rate,
                projected_completion=mine.projected_completion,
                status=mine.status.value,
                last_event_at=now_values.get(unit, repository.ValueAt(0, None)).last_event_at,
                children_total=len(children),
                children_done=sum(1 for k in kids if k.status is Status.DONE),
            )
        )
    return out
