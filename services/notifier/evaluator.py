"""One evaluation of the alert rules at a time `at`, along its flow:

load (`inputs`: the board's figures of every targeted key, the policies, the open alerts,
the briefing ranks) → judge (`judging`: the rules, and which alerts change; pure) →
lifecycle (`lifecycle`: each alert stepped under its row lock, escalation) → group
(`groups`: one message per recipient, planned under the group's lock) → messages
(`messages`) → digests (`digests`). Nothing of it while the aggregator rebuilds its
counters (`_waits_for_recount`).

`at` always comes from the caller's one `Clock`: the service's clock loop and feed consumer
pass `clock.now()`; a test or a replay passes simulated times and runs a campaign's whole
alert timeline in seconds. Every step is safe to run concurrently in several replicas: row
locks serialise the decisions and unique keys make each message exist once."""

import asyncio
import time as monotonic
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

import asyncpg

from services.notifier.commitments import check_commitments
from services.notifier.digests import deferred_grace, queue_digests
from services.notifier.groups import Planner
from services.notifier.inputs import CampaignJudged, Judged, in_play, judge_keys, judge_targeted
from services.notifier.judging import Written, judge_alerts
from services.notifier.lifecycle import apply_changes, escalate
from services.notifier.links import LinkIssuer
from services.notifier.messages import Outgoing
from services.notifier.metrics import NotifierMetrics
from services.notifier.policy import Policy, effective
from services.notifier.ranks import briefing_ranks
from services.notifier.render import Renderer
from services.notifier.repository import alerts as alert_sql
from services.notifier.repository import reference as reference_sql
from services.notifier.settings import NotifierSettings
from services.notifier.summary import Summary
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign, moving
from tiendo.board.isolation import CampaignIsolation
from tiendo.board.window import WindowValues
from tiendo.counting import Key
from tiendo.database import Connection, one_state
from tiendo.logs import get_logger

log = get_logger(__name__)


class Evaluator:
    def __init__(
        self,
        settings: NotifierSettings,
        renderer: Renderer,
        channels: Collection[str],
        metrics: NotifierMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._renderer = renderer
        self._metrics = metrics or NotifierMetrics()
        self._outgoing = Outgoing(channels, settings.webhook_url, self._metrics)
        self._planner = Planner(
            renderer,
            self._outgoing,
            LinkIssuer(settings.link_key(), settings.public_url),
            self._metrics.campaign_messages_failing,
        )
        # values a run-rate window ago, from history: reused between passes for a while
        self._window = WindowValues(timedelta(seconds=settings.run_rate_cache_seconds))
        # The feed consumer and the clock take turns: an evaluation that read the board
        # before a change must not land after one that read it later (it would re-open
        # what the later one found clear). Replicas are kept apart by the row locks.
        self._turn = asyncio.Lock()
        # The figures this replica last wrote to each open alert (`judging.Written`)
        self._written = Written()
        self._isolation = CampaignIsolation(self._metrics.campaign_failing)
        self._follow_ups = CampaignIsolation(
            self._metrics.campaign_follow_ups_failing, work="digests and commitments"
        )
        # The first moment a pass of this replica waited for a rebuild, until a full pass
        # judges again: a digest slot still due then is sent, however late
        # (`digests.deferred_grace`), not skipped as a notifier down would miss it ...
        self._waited_since: datetime | None = None
        # ... by the first full pass that follows each campaign up: per campaign, that
        # moment, until a pass's digests and commitment checks of it get through (one
        # whose follow-up raised, or that a pass left out, keeps it for the next)
        self._held_back: dict[str, datetime] = {}
        self._waiting = False  # the last pass waited (`tiendo_notifier_waiting_for_recount`)

    async def evaluate_at(
        self, pool: asyncpg.Pool, at: datetime, keys: Sequence[Key] | None = None
    ) -> Summary:
        """Evaluate every targeted key of the campaigns in play (`keys` None: the clock's
        full pass, with bottom_rank, escalations, campaign ends and digests) or only `keys`
        (a feed update), at time `at`."""
        async with self._turn:
            return await self._evaluate(pool, at, keys)

    async def _evaluate(
        self, pool: asyncpg.Pool, at: datetime, keys: Sequence[Key] | None
    ) -> Summary:
        started = t = monotonic.perf_counter()
        full = keys is None
        summary = Summary(at)
        async with pool.acquire() as conn:
            if await self._waits_for_recount(conn, at, full, summary):
                return summary
            campaigns = await board.campaigns(conn)
            overrides = await reference_sql.policies(conn)
            policies = {c: effective(self._settings, overrides.get(c, {})) for c in campaigns}
            # A campaign a cut-over has just passed, whose live counters the aggregator has
            # not moved onto the new tree yet, is not judged until it has: its alerts stay
            # as they are, neither judged on the old tree nor closed as gone.
            waiting = moving(campaigns.values(), at)
            if waiting:
                log.info("campaigns_wait_for_their_tree", campaigns=sorted(waiting))
            open_ = await alert_sql.open_alerts(conn, keys)
            if keys is None:
                # running campaigns, and any with an alert still open (it ended: close it)
                wanted = {c.id for c in campaigns.values() if in_play(c, at)}
                wanted |= {k.key.campaign_id for k in open_ if k.key.campaign_id in campaigns}
            else:
                wanted = {k.campaign_id for k in keys if k.campaign_id in campaigns}
            wanted -= waiting
            t = summary.timed("load", t)

            async def read(campaign: Campaign) -> CampaignJudged:
                if keys is not None:  # a feed update: its keys, no ranks
                    async with one_state(conn):
                        return CampaignJudged(
                            await judge_keys(conn, campaign, keys, at, self._window), {}
                        )
                # The ranks first, on their own: they are read from the history of the
                # briefing (as_of), and stored once per version of it, replicas taking
                # turns under a lock that a snapshot taken before it would not see past.
                ranks = await briefing_ranks(conn, {campaign.id: campaign}, policies, at)
                # the figures in one state (tiendo.database.one_state)
                async with one_state(conn):
                    return CampaignJudged(
                        await judge_targeted(conn, campaign, at, self._window), ranks
                    )

            # not atomic: the ranks stored stay stored if the figures then fail (they are
            # the history's, whatever the figures do)
            done = await self._isolation.each(
                conn, [campaigns[c] for c in sorted(wanted)], read, whole=full, atomic=False
            )
            judged = [j for r in done.values() for j in r.judged]
            ranks = {k: v for r in done.values() for k, v in r.ranks.items()}
            t = summary.timed("board", t)
            # A campaign whose judging failed is left out as a waiting one is: its alerts
            # stay as they are (not closed, not escalated), it is not marked evaluated, its
            # commitments wait (tiendo.board.isolation).
            summary.failed = wanted - done.keys()
            wanted -= summary.failed
            held = waiting | summary.failed
            # and no reminder about them: "still behind" is not known of a campaign no
            # whole pass has judged since (a feed pass's own failures are in `failing` too)
            unjudged = waiting | self._isolation.failing
            open_ = {k: a for k, a in open_.items() if k.key.campaign_id not in held}
            judging = {c: campaign for c, campaign in campaigns.items() if c not in held}
            # the versions of the units whose open alerts a full pass will close as no
            # longer judged: why each closes (a cut-over replaced the unit, or its target
            # went) is what its chief is told
            gone: dict[str, reference_sql.Version] = {}
            if full:
                seen = {j.key for j in judged}
                gone = await reference_sql.versions(
                    conn, sorted({k.key.unit for k in open_ if k.key not in seen})
                )
            # again once read: a rebuild whose reset committed while the board was read
            # left part of what was read short of the events (services/notifier/recounting)
            if await self._waits_for_recount(conn, at, full, summary):
                return summary
        self._resumed()
        fallback = self._default()
        judgement = judge_alerts(
            judged, campaigns, policies, fallback, open_, ranks, at, full, self._written, gone
        )
        todo = judgement.todo
        t = summary.timed("judge", t)
        async with pool.acquire() as conn:
            if full:
                await alert_sql.mark_evaluated(conn, list(wanted), at)
            versions = await alert_sql.touch_alerts(
                conn, at, [(t.alert_id, t.payload) for t in judgement.touched]
            )
            if full:  # forget alerts closed since
                ids = {r["id"] for r in open_.values()}
                self._written.keep_only(ids)
            self._written.wrote(versions, {t.alert_id: t.details for t in judgement.touched})
            t = summary.timed("touch", t)
            for c in await apply_changes(conn, todo, policies, fallback, at):
                summary.changes.append(c)
                self._metrics.transitions.labels(c.rule.value, c.change.value).inc()
            t = summary.timed("lifecycle", t)
            if full:
                await escalate(conn, policies, judging, at, summary, self._metrics, self._outgoing)
                t = summary.timed("escalate", t)
            await self._planner.plan(conn, policies, campaigns, fallback, at, summary, unjudged)
            t = summary.timed("groups", t)
            if full:
                # each campaign's digests and commitment checks apart: one whose digest or
                # check raises (a check reads history, as judging does) has the rest of
                # them left for the next pass, and the others' go (tiendo.board.isolation).
                # Each message commits on its own, as before: none is taken back.
                of: dict[str, list[Judged]] = {c: [] for c in judging}
                for j in judged:
                    of.setdefault(j.verdict.campaign_id, []).append(j)
                # a slot a rebuild held back goes with the campaign's first follow-up that
                # gets through, however late, and then only as any slot goes: once
                self._hold_back(campaigns)
                grace = timedelta(seconds=self._settings.digest_grace_seconds)

                async def follow_up(campaign: Campaign) -> None:
                    one, started = {campaign.id: campaign}, monotonic.perf_counter()
                    await queue_digests(
                        conn,
                        of[campaign.id],
                        one,
                        policies,
                        at,
                        deferred_grace(grace, at, self._held_back.get(campaign.id)),
                        self._renderer,
                        self._outgoing,
                    )
                    started = summary.timed("digests", started)
                    await check_commitments(conn, one, policies, at, self._outgoing, summary)
                    summary.timed("commitments", started)

                followed = await self._follow_ups.each(
                    conn,
                    [judging[c] for c in sorted(judging)],
                    follow_up,
                    keep=held,  # not followed up this pass, not forgotten
                    atomic=False,
                )
                for campaign_id in followed:
                    self._held_back.pop(campaign_id, None)
                t = monotonic.perf_counter()
            counts = await alert_sql.count_firing(conn)
            summary.timed("count", t)
        self._metrics.set_firing(counts, campaigns)
        trigger = "clock" if full else "feed"
        self._metrics.evaluations.labels(trigger).inc(len(judged))
        self._metrics.evaluation_seconds.labels(trigger).observe(monotonic.perf_counter() - started)
        return summary

    async def _waits_for_recount(
        self, conn: Connection, at: datetime, full: bool, summary: Summary
    ) -> bool:
        """Whether a rebuild is in progress, and so this pass judges nothing: the counters
        and the history hold part of the events, and every verdict read from them is a
        wrong number (a unit at 0 "behind", a firing alert "back on track"). Its alerts
        stay exactly as they are (not opened, resolved, repeated nor escalated), no
        message is planned, no digest nor commitment check goes, the briefing is not
        ranked; each waits for the first pass after the rebuild (docs/alerts.md "While the
        counters are rebuilt"). Not a failure: the loops beat, the service stays ready."""
        recounting = await board.recount_in_progress(conn)
        if recounting is None:
            return False
        summary.recounting = recounting
        # values a window ago read meanwhile may be short too: read again after it
        self._window = WindowValues(self._window.max_age)
        if self._waited_since is None or at < self._waited_since:
            self._waited_since = at
        self._waiting = True
        self._metrics.waiting_for_recount.set(1)
        log.info(
            "judging_waits_for_recount",
            trigger="clock" if full else "feed",
            replayed=recounting.replayed,
            total=recounting.total,
            recount_started_at=recounting.started_at.isoformat(),
        )
        return True

    def _hold_back(self, campaigns: Collection[str]) -> None:
        """A full pass judges again: the wait since `_waited_since`, if any, holds back the
        digest slot of every campaign (`campaigns`: those known now; one gone is
        forgotten) until a pass follows it up (`_held_back`), each from its first wait."""
        waited, self._waited_since = self._waited_since, None
        if waited is not None:
            for campaign_id in campaigns:
                self._held_back[campaign_id] = min(self._held_back.get(campaign_id, waited), waited)
        self._held_back = {c: s for c, s in self._held_back.items() if c in campaigns}

    def _resumed(self) -> None:
        """A pass judges again: said once, when it follows a wait."""
        if self._waiting:
            log.info(
                "judging_resumes_after_recount",
                waited_since=self._waited_since.isoformat() if self._waited_since else None,
            )
        self._waiting = False
        self._metrics.waiting_for_recount.set(0)

    def _default(self) -> Policy:
        return effective(self._settings, {})
