"""Load: the notifier's input is the board itself. Every (campaign, unit, indicator) with a
target is judged by `tiendo.board` (the code behind the read API and the leaderboard), with
the campaign's plan, milestones, thresholds and deadline, so an alert can never see other
figures than the board shows, and a unit that never reported is judged like any other."""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tiendo.board.campaign import Campaign
from tiendo.board.figures import Verdict, is_judged, judge, judge_campaign
from tiendo.board.window import WindowValues
from tiendo.counting import Key
from tiendo.database import Connection
from tiendo.pace import Progress


@dataclass(frozen=True, slots=True)
class Judged:
    """One key as the board judges it at the evaluation's moment, with its campaign."""

    verdict: Verdict
    campaign: Campaign

    @property
    def key(self) -> Key:
        return self.verdict.key

    @property
    def progress(self) -> Progress:
        return self.verdict.progress


def follow_ups_end(campaign: Campaign) -> datetime:
    """The end of the campaign's local day after its last one: digests still go out on the
    day after the deadline (the final figures), whatever the deadline's time of day. Its
    last day is the local date of its last instant, so a deadline at local midnight (the
    usual "until 30 June": 00:00 on 1 July) ends 30 June and its day after is 1 July;
    a deadline at 12:00 on 12 May has 13 May. Before, the day after ended 24 hours after the
    deadline, and a deadline at noon lost the day after's evening digest."""
    zone = ZoneInfo(campaign.timezone)
    last_day = (campaign.deadline - timedelta(microseconds=1)).astimezone(zone).date()
    return datetime.combine(last_day + timedelta(days=2), time(0), tzinfo=zone)


def in_play(campaign: Campaign, at: datetime) -> bool:
    """Whether a full pass judges the campaign: running, or just over, until the end of the
    local day after its deadline (final figures, `follow_ups_end`)."""
    return campaign.starts_at < at < follow_ups_end(campaign)


async def judge_targeted(
    conn: Connection, campaign: Campaign, at: datetime, window: WindowValues | None
) -> list[Judged]:
    """Every targeted key of the campaign, exactly (the run-rate start values are read
    anew; feed passes in between reuse them)."""
    verdicts = await judge_campaign(conn, campaign, at, live=True, window=window, refresh=True)
    return [Judged(v, campaign) for v in verdicts]


async def judge_keys(
    conn: Connection,
    campaign: Campaign,
    keys: Iterable[Key],
    at: datetime,
    window: WindowValues | None,
) -> list[Judged]:
    """The given keys of the campaign (a feed update), those with a target."""
    wanted: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        if key.campaign_id == campaign.id:
            wanted[key.indicator].append(key.unit)
    out: list[Judged] = []
    for indicator, units in sorted(wanted.items()):
        verdicts = await judge(conn, campaign, indicator, units, at, live=True, window=window)
        out.extend(Judged(v, campaign) for v in verdicts.values() if is_judged(v.progress.target))
    return out


@dataclass(frozen=True, slots=True)
class CampaignJudged:
    """What a pass reads of one campaign: its keys judged, its briefing's bottom ranks (none
    in a feed pass)."""

    judged: list[Judged]
    ranks: dict[Key, dict[str, Any]]
