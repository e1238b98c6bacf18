"""Stored campaigns the aggregator cannot count for, kept out of the apply.

The admin API refuses a bad campaign, but a row can still be unusable: inserted before
validation existed, edited with SQL, or its time zone gone from a newer tzdata. One such
campaign used to fail every batch (`AT TIME ZONE` of an unknown zone) and stop counting for
all. The guard runs the same `campaign_problems` over the stored campaigns and keeps the
ids of the unusable ones, which the apply, the metric snapshot and the feed leave out.
Each change is logged once and exported as `tiendo_aggregator_campaign_unusable`; /readyz
names them. A fix through the admin API recounts the campaign from the stored events.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from zoneinfo import available_timezones

import asyncpg
from prometheus_client import Gauge

from services.aggregator.repository import reference as reference_sql
from services.aggregator.validation import Problem, TargetRef, campaign_problems
from tiendo.board.campaign import Campaign
from tiendo.database import Connection
from tiendo.logs import get_logger

log = get_logger(__name__)


async def known_timezones(conn: Connection) -> set[str]:
    """Zone names both Python (boards, messages) and PostgreSQL (day buckets) resolve."""
    names = {r["name"] for r in await conn.fetch(reference_sql.SELECT_DATABASE_TIMEZONES)}
    return names & available_timezones()


async def known_indicators(conn: Connection) -> set[str]:
    return {r["code"] for r in await conn.fetch(reference_sql.SELECT_INDICATOR_CODES)}


def stored_target(unit: str, indicator: str) -> TargetRef:
    return (None, f"targets[{unit}/{indicator}].deadline")


async def target_deadlines(
    conn: Connection, campaign_id: str | None = None
) -> dict[str, dict[TargetRef, datetime]]:
    """Per campaign: the stored unit-specific deadlines."""
    out: dict[str, dict[TargetRef, datetime]] = {}
    for r in await conn.fetch(reference_sql.SELECT_TARGET_DEADLINES, campaign_id):
        ref = stored_target(r["unit"], r["indicator"])
        out.setdefault(r["campaign_id"], {})[ref] = r["deadline"]
    return out


class CampaignGuard:
    def __init__(self, gauge: Gauge | None = None) -> None:
        self._gauge = gauge
        self._stamp: tuple[object, ...] | None = None
        self._labelled: set[str] = set()
        self.unusable: dict[str, list[Problem]] = {}

    @property
    def ids(self) -> list[str]:
        return sorted(self.unusable)

    def reasons(self) -> dict[str, str]:
        return {c: "; ".join(str(p) for p in problems) for c, problems in self.unusable.items()}

    def invalidate(self) -> None:
        """Check everything again before the next batch (after a failed one)."""
        self._stamp = None

    async def ensure_fresh(self, conn: Connection) -> None:
        """Check again if a campaign changed through the admin API since the last check
        (one tiny query; the apply calls it every batch, under the apply lock)."""
        row = await conn.fetchrow(reference_sql.SELECT_CAMPAIGNS_STAMP)
        stamp = tuple(row) if row is not None else None
        if stamp != self._stamp:
            await self.refresh(conn)

    async def refresh(self, conn: Connection) -> None:
        """Check every stored campaign again."""
        row = await conn.fetchrow(reference_sql.SELECT_CAMPAIGNS_STAMP)
        rows = await conn.fetch(reference_sql.SELECT_CAMPAIGNS)
        found = check_rows(
            rows,
            timezones=await known_timezones(conn),
            indicators=await known_indicators(conn),
            deadlines=await target_deadlines(conn),
        )
        self._stamp = tuple(row) if row is not None else None
        self._report({r["id"] for r in rows}, found)

    def _report(self, campaigns: set[str], found: dict[str, list[Problem]]) -> None:
        for campaign_id, problems in sorted(found.items()):
            if self.unusable.get(campaign_id) != problems:
                log.error(
                    "campaign_unusable",
                    campaign=campaign_id,
                    problems=[str(p) for p in problems],
                )
        for campaign_id in sorted(set(self.unusable) - set(found)):
            log.info("campaign_usable_again", campaign=campaign_id)
        if self._gauge is not None:
            for campaign_id in campaigns:
                self._gauge.labels(campaign_id).set(1 if campaign_id in found else 0)
            for campaign_id in self._labelled - campaigns:
                self._gauge.remove(campaign_id)
            self._labelled = campaigns
        self.unusable = found


def check_rows(
    rows: Sequence[asyncpg.Record],
    *,
    timezones: set[str],
    indicators: set[str],
    deadlines: Mapping[str, Mapping[TargetRef, datetime]],
) -> dict[str, list[Problem]]:
    """Problems of each stored campaign that has any."""
    found: dict[str, list[Problem]] = {}
    for row in rows:
        campaign_id = str(row["id"])
        try:
            campaign = Campaign.from_row(row)
        except (ValueError, KeyError, TypeError) as exc:
            found[campaign_id] = [Problem("milestones", f"unreadable: {exc}")]
            continue
        problems = campaign_problems(
            campaign,
            timezones=timezones,
            indicators=indicators,
            target_deadlines=deadlines.get(campaign_id),
        )
        if problems:
            found[campaign_id] = problems
    return found
