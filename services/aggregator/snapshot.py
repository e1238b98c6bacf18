"""The figures exported as metrics, recomputed in the background (never during a scrape)."""

from datetime import datetime

from services.aggregator import feed, repository
from services.aggregator.metrics import CampaignFigures, LevelFigures, UnitFigures, UnitSnapshot
from tiendo.database import Connection
from tiendo.pace import assess, run_rate_window

# Per level, units with a positive target and how many reached it: one pass over the
# progress table, every level (deeper levels than the per-unit cut-off included).
SELECT_LEVEL_COUNTS = """
SELECT p.campaign_id, u.level, p.indicator,
       count(*) AS units, count(*) FILTER (WHERE p.value >= p.target) AS done
FROM progress p JOIN units u ON u.code = p.unit
WHERE p.target > 0
GROUP BY 1, 2, 3
"""
# Events counted on the campaign's current local day, summed over each exported unit's
# subtree. Only today's rows are read, so the cost does not grow with the campaign's age.
SELECT_EVENTS_TODAY = """
SELECT d.campaign_id, lineage.code AS unit, d.indicator, sum(d.events)::bigint AS events
FROM daily_counts d
JOIN campaigns c ON c.id = d.campaign_id
JOIN units u ON u.code = d.unit
CROSS JOIN LATERAL unnest(u.ancestors || u.code) AS lineage (code)
JOIN units l ON l.code = lineage.code
WHERE d.day = ($2::timestamptz AT TIME ZONE c.timezone)::date AND l.level <= $1
GROUP BY 1, 2, 3
"""


async def unit_figures(conn: Connection, max_level: int, now: datetime) -> UnitSnapshot:
    """Per-unit figures down to `max_level`, per-level counts and campaign windows at `now`."""
    campaigns = await feed.load_campaigns(conn)
    rows = await conn.fetch(repository.SELECT_PROGRESS_UP_TO_LEVEL, max_level)
    events_today = {
        (r["campaign_id"], r["unit"], r["indicator"]): r["events"]
        for r in await conn.fetch(SELECT_EVENTS_TODAY, max_level, now)
    }
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
    figures: list[UnitFigures] = []
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
                projected_completion=p.projected_completion,
                last_event_at=r["last_event_at"],
                events_today=events_today.get(key, 0),
            )
        )
    levels = [
        LevelFigures(r["campaign_id"], r["level"], r["indicator"], r["units"], r["done"])
        for r in await conn.fetch(SELECT_LEVEL_COUNTS)
    ]
    windows = [CampaignFigures(c.id, c.starts_at, c.deadline) for c in campaigns.values()]
    return UnitSnapshot(units=figures, levels=levels, campaigns=windows, taken_at=now)
