"""Stored campaigns the aggregator cannot count for, kept out of the apply.

The admin API refuses a bad campaign, but a row can still be unusable: inserted before
validation existed, edited with SQL, its time zone gone from a newer tzdata, or a zone
name that each host reads its own way (`localtime`: `campaign_zone_name`). One such
campaign used to fail every batch (`AT TIME ZONE` of an unknown zone) and stop counting for
all. The guard runs the same `campaign_problems` over the stored campaigns and keeps the
ids of the unusable ones, which the apply, the metric snapshot and the feed leave out.
Each change is logged once and exported as `tiendo_aggregator_campaign_unusable`; /readyz
names them. A fix through the admin API recounts the campaign from the stored events.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from zoneinfo import available_timezones

from prometheus_client import Gauge

from services.aggregator.repository import reference as reference_sql
from services.aggregator.repository.reference import StoredCampaign
from services.aggregator.validation import Problem, TargetRef, campaign_problems
from tiendo.database import Connection
from tiendo.logs import get_logger

log = get_logger(__name__)


async def known_timezones(conn: Connection) -> set[str]:
    """Zone names both Python (boards, messages) and PostgreSQL (day buckets) resolve;
    which of them a campaign may take is `campaign_problems`' to say."""
    return await reference_sql.database_timezones(conn) & available_timezones()


async def known_indicators(conn: Connection) -> set[str]:
    return await reference_sql.indicator_codes(conn)


def stored_target(unit: str, indicator: str) -> TargetRef:
    return (None, f"targets[{unit}/{indicator}].deadline")


async def target_deadlines(
    conn: Connection, campaign_id: str | None = None
) -> dict[str, dict[TargetRef, datetime]]:
    """Per campaign: the stored unit-specific deadlines."""
    out: dict[str, dict[TargetRef, datetime]] = {}
    for t in await reference_sql.target_deadlines(conn, campaign_id):
        out.setdefault(t.campaign_id, {})[stored_target(t.unit, t.indicator)] = t.deadline
    return out


class CampaignGuard:
    def __init__(self, gauge: Gauge | None = None) -> None:
        self._gauge = gauge
        self._stamp: tuple[int, datetime | None] | None = None
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
        if await reference_sql.campaigns_stamp(conn) != self._stamp:
            await self.refresh(conn)

    async def refresh(self, conn: Connection) -> None:
        """Check every stored campaign again."""
        stamp = await reference_sql.campaigns_stamp(conn)
        stored = await reference_sql.stored_campaigns(conn)
        found = await check_stored(conn, stored)
        self._stamp = stamp
        self._report({c.id for c in stored}, found)

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


async def check_stored(
    conn: Connection, stored: Sequence[StoredCampaign]
) -> dict[str, list[Problem]]:
    """Problems of each stored campaign that has any, as the guard finds them (a re-plan
    of every campaign after a tree change leaves these out too: `admin.replan_every`)."""
    return check_campaigns(
        stored,
        timezones=await known_timezones(conn),
        indicators=await known_indicators(conn),
        deadlines=await target_deadlines(conn),
    )


def check_campaigns(
    stored: Sequence[StoredCampaign],
    *,
    timezones: set[str],
    indicators: set[str],
    deadlines: Mapping[str, Mapping[TargetRef, datetime]],
) -> dict[str, list[Problem]]:
    """Problems of each stored campaign that has any."""
    found: dict[str, list[Problem]] = {}
    for s in stored:
        if s.campaign is None:
            found[s.id] = [Problem("milestones", f"unreadable: {s.unreadable}")]
            continue
        problems = campaign_problems(
            s.campaign,
            timezones=timezones,
            indicators=indicators,
            target_deadlines=deadlines.get(s.id),
        )
        if problems:
            found[s.id] = problems
    return found
