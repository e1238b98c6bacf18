"""The figures exported as metrics, recomputed in the background (never during a scrape)."""

from collections.abc import Sequence
from datetime import datetime

from services.aggregator.metrics import CampaignFigures, LevelFigures, UnitFigures, UnitSnapshot
from tiendo.board import repository as board
from tiendo.board.figures import judge
from tiendo.board.window import WindowValues
from tiendo.database import Connection

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
  AND c.id <> ALL ($3::text[])  -- a campaign flagged unusable may have no valid zone
GROUP BY 1, 2, 3
"""


async def unit_figures(
    conn: Connection,
    max_level: int,
    now: datetime,
    window_values: WindowValues | None = None,
    unusable: Sequence[str] = (),
) -> UnitSnapshot:
    """Per-unit figures down to `max_level`, per-level counts and campaign windows at `now`.

    `window_values`: where values one window ago are kept between calls (none: computed);
    `unusable`: campaigns left out.
    """
    campaigns = await board.campaigns(conn)
    for flagged in unusable:
        campaigns.pop(flagged, None)
    codes = await board.codes_up_to_level(conn, max_level)
    events_today = {
        (r["campaign_id"], r["unit"], r["indicator"]): r["events"]
        for r in await conn.fetch(SELECT_EVENTS_TODAY, max_level, now, list(unusable))
    }
    figures: list[UnitFigures] = []
    for campaign in campaigns.values():
        for indicator in campaign.indicators:
            verdicts = await judge(
                conn, campaign, indicator, codes, now, live=True, window=window_values
            )
            figures.extend(
                UnitFigures(
                    campaign=v.campaign_id,
                    unit=v.unit,
                    level=v.level,
                    indicator=v.indicator,
                    value=v.progress.value,
                    target=v.progress.target,
                    expected=v.progress.expected,
                    pct=v.progress.pct,
                    pace=v.progress.pace,
                    status=v.progress.status,
                    projected_completion=v.progress.projected_completion,
                    last_event_at=v.last_event_at,
                    events_today=events_today.get(v.key, 0),
                )
                for v in verdicts.values()
            )
    levels = [
        LevelFigures(r["campaign_id"], r["level"], r["indicator"], r["units"], r["done"])
        for r in await conn.fetch(SELECT_LEVEL_COUNTS)
    ]
    windows = [CampaignFigures(c.id, c.starts_at, c.deadline) for c in campaigns.values()]
    return UnitSnapshot(units=figures, levels=levels, campaigns=windows, taken_at=now)
