"""The figures exported as metrics, recomputed in the background (never during a scrape)."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
  AND c.id <> ALL ($3::text[])  -- a campaign flagged unusable may have no valid zone
GROUP BY 1, 2, 3
"""


@dataclass
class WindowValues:
    """Each unit's value one run-rate window ago, kept for `max_age`.

    Those values come from the event history (snapshot resolution as of a past moment),
    which grows all campaign long; recomputing them on every refresh made each snapshot
    cost a scan of the history. A window of days moved by minutes changes a run rate by
    well under a percent (5 minutes of 7 days: 0.05 %).
    """

    max_age: timedelta
    _kept: dict[tuple[str, str], tuple[datetime, tuple[str, ...], dict[str, int]]] = field(
        default_factory=dict
    )

    def fresh(self, key: tuple[str, str], units: tuple[str, ...], now: datetime) -> bool:
        kept = self._kept.get(key)
        return kept is not None and kept[1] == units and now - kept[0] < self.max_age

    def get(self, key: tuple[str, str]) -> dict[str, int]:
        return self._kept[key][2]

    def keep(
        self, key: tuple[str, str], units: tuple[str, ...], now: datetime, values: dict[str, int]
    ) -> None:
        self._kept[key] = (now, units, values)


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
    window_values = window_values or WindowValues(timedelta(0))
    campaigns = await feed.load_campaigns(conn, unusable)
    rows = await conn.fetch(repository.SELECT_PROGRESS_UP_TO_LEVEL, max_level)
    events_today = {
        (r["campaign_id"], r["unit"], r["indicator"]): r["events"]
        for r in await conn.fetch(SELECT_EVENTS_TODAY, max_level, now, list(unusable))
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
        pair, members = (campaign_id, indicator), tuple(sorted(units))
        if not window_values.fresh(pair, members, now):
            values = await repository.values_as_of(
                conn,
                campaign_id,
                indicator,
                units,
                campaign.starts_at,
                min(now, campaign.deadline) - window,
            )
            window_values.keep(pair, members, now, {u: v.value for u, v in values.items()})
        for unit, value in window_values.get(pair).items():
            ago[campaign_id, unit, indicator] = value
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
