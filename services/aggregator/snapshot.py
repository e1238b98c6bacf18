"""The per-unit figures exported as metrics, recomputed in the background."""

from datetime import datetime

from services.aggregator import feed, repository
from services.aggregator.metrics import UnitFigures
from tiendo.database import Connection
from tiendo.pace import assess, run_rate_window


async def unit_figures(conn: Connection, max_level: int, now: datetime) -> list[UnitFigures]:
    campaigns = await feed.load_campaigns(conn)
    rows = await conn.fetch(repository.SELECT_PROGRESS_UP_TO_LEVEL, max_level)
    figures: list[UnitFigures] = []
    by_pair: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        by_pair.setdefault((r["campaign_id"], r["indicator"]), []).append(r["unit"])
    ago: dict[tuple[str, str, str], int] = {}
    for (campaign_id, indicator), units in by_pair.items():
        campaign = campaigns.get(campaign_id)
        if campaign is None:
            continue
        window = run_rate_window(campaign.plan(0, 0), now)
        if window is None:
            continue
        values = await repository.values_as_of(
            conn,
            campaign_id,
            indicator,
            units,
            campaign.starts_at,
            min(now, campaign.deadline) - window,
        )
        for unit, v in values.items():
            ago[campaign_id, unit, indicator] = v.value
    for r in rows:
        campaign = campaigns.get(r["campaign_id"])
        if campaign is None:
            continue
        key = (r["campaign_id"], r["unit"], r["indicator"])
        window = run_rate_window(campaign.plan(0, 0), now)
        p = assess(
            campaign.plan(r["baseline"], r["target"], r["deadline"]),
            r["value"],
            now,
            last_event_at=r["last_event_at"],
            value_window_ago=ago.get(key, 0) if window is not None else None,
            thresholds=campaign.thresholds,
        )
        figures.append(
            UnitFigures(
                campaign=r["campaign_id"],
                unit=r["unit"],
                level=r["level"],
                indicator=r["indicator"],
                value=r["value"],
                target=r["target"],
                expected=p.expected,
                pct=p.pct,
                pace=p.pace,
                status=p.status,
            )
        )
    return figures
