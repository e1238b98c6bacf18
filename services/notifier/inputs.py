"""Load: the notifier's input is the board itself. Every (campaign, unit, indicator) with a
target is judged by `tiendo.board` (the code behind the read API and the leaderboard), with
the campaign's plan, milestones, thresholds and deadline, so an alert can never see other
figures than the board shows, and a unit that never reported is judged like any other."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tiendo.board.campaign import Campaign
from tiendo.board.figures import Verdict, judge, judge_campaign
from tiendo.board.window import WindowValues
from tiendo.counting import Key
from tiendo.database import Connection
from tiendo.pace import Progress

# Digests still go out on the day after the deadline (the final figures).
AFTER_DEADLINE = timedelta(days=1)


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


def in_play(campaign: Campaign, at: datetime) -> bool:
    """Whether a full pass judges the campaign: running, or just over (final figures)."""
    return campaign.starts_at < at < campaign.deadline + AFTER_DEADLINE


async def judge_all(
    conn: Connection,
    campaigns: Iterable[Campaign],
    at: datetime,
    window: WindowValues | None,
) -> list[Judged]:
    """Every targeted key of the given campaigns, exactly (the run-rate start values are
    read anew; feed passes in between reuse them)."""
    out: list[Judged] = []
    for campaign in campaigns:
        verdicts = await judge_campaign(conn, campaign, at, live=True, window=window, refresh=True)
        out.extend(Judged(v, campaign) for v in verdicts)
    return out


async def judge_keys(
    conn: Connection,
    campaigns: dict[str, Campaign],
    keys: Sequence[Key],
    at: datetime,
    window: WindowValues | None,
) -> list[Judged]:
    """The given keys (a feed update), those with a target in a known campaign."""
    wanted: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key in keys:
        if key.campaign_id in campaigns:
            wanted[key.campaign_id, key.indicator].append(key.unit)
    out: list[Judged] = []
    for (campaign_id, indicator), units in sorted(wanted.items()):
        campaign = campaigns[campaign_id]
        verdicts = await judge(conn, campaign, indicator, units, at, live=True, window=window)
        out.extend(Judged(v, campaign) for v in verdicts.values() if v.progress.target > 0)
    return out
