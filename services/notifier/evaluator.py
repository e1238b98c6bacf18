"""One evaluation of the alert rules at a time `at`, along its flow:

load (`inputs`: the board's figures of every targeted key, the policies, the open alerts,
the briefing ranks) → judge (`rules.held`, pure) → lifecycle (`lifecycle`: each alert
stepped under its row lock, escalation) → group (`groups`: one message per recipient,
planned under the group's lock) → messages (`messages`) → digests (`digests`). Nothing
of it while the aggregator rebuilds its counters (`_waits_for_recount`).

`at` always comes from the caller's one `Clock`: the service's clock loop and feed consumer
pass `clock.now()`; a test or a replay passes simulated times and runs a campaign's whole
alert timeline in seconds. Every step is safe to run concurrently in several replicas: row
locks serialise the decisions and unique keys make each message exist once."""

import asyncio
import json
import time as monotonic
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.notifier.commitments import check_commitments
from services.notifier.digests import deferred_grace, queue_digests
from services.notifier.groups import Planner
from services.notifier.inputs import CampaignJudged, Judged, in_play, judge_keys, judge_targeted
from services.notifier.lifecycle import Todo, alert_of, apply_changes, escalate
from services.notifier.links import LinkIssuer
from services.notifier.messages import Outgoing, details
from services.notifier.metrics import NotifierMetrics
from services.notifier.policy import Policy, effective
from services.notifier.ranks import briefing_ranks
from services.notifier.render import Renderer
from services.notifier.repository import alerts as alert_sql
from services.notifier.repository import reference as reference_sql
from services.notifier.repository.alerts import AlertKey
from services.notifier.rules import Change, Rule, held, ranked_alerted, step
from services.notifier.settings import NotifierSettings
from services.notifier.summary import Summary
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign, moving
from tiendo.board.isolation import CampaignIsolation
from tiendo.board.window import WindowValues
from tiendo.counting import Key
from tiendo.database import Connection
from tiendo.logs import get_logger

log = get_logger(__name__)


def closed_because(
    campaign: Campaign | None, version: reference_sql.Version | None, at: datetime
) -> dict[str, Any]:
    """Why an open alert whose key a full pass no longer judges closes, as its details
    say it (messages.alert_model): `replaced` when a cut-over at or before the moment the
    campaign reports on closed its unit's version (docs/units-over-time.md: its successors
    are judged from then on), with the successors and the moment; `untracked` otherwise
    (its target was removed or set to 0, the unit exempted, the campaign deleted)."""
    if campaign is not None and version is not None and version.closed_by(campaign.reports_on(at)):
        assert version.valid_to is not None
        return {
            "closed_because": "replaced",
            "replaced_at": version.valid_to.isoformat(),
            "successors": list(version.successors),
        }
    return {"closed_because": "untracked"}


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
        # The figures this replica last wrote to each open alert, with the row's version
        # then: a pass rewrites an alert only when its figures changed.
        self._written: dict[int, tuple[int, str]] = {}
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
                    return CampaignJudged(
                        await judge_keys(conn, campaign, keys, at, self._window), {}
                    )
                return CampaignJudged(
                    await judge_targeted(conn, campaign, at, self._window),
                    await briefing_ranks(conn, {campaign.id: campaign}, policies, at),
                )

            done = await self._isolation.each(
                conn, [campaigns[c] for c in sorted(wanted)], read, whole=full
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
        todo, touched = self._judge(judged, campaigns, policies, open_, ranks, at, full, gone)
        t = summary.timed("judge", t)
        async with pool.acquire() as conn:
            if full:
                await alert_sql.mark_evaluated(conn, list(wanted), at)
            versions = await alert_sql.touch_alerts(conn, at, touched)
            if full:  # forget alerts closed since
                ids = {r["id"] for r in open_.values()}
                self._written = {i: w for i, w in self._written.items() if i in ids}
            self._written.update((i, (versions[i], p)) for i, p in touched if i in versions)
            t = summary.timed("touch", t)
            for c in await apply_changes(conn, todo, policies, self._default(), at):
                summary.changes.append(c)
                self._metrics.transitions.labels(c.rule.value, c.change.value).inc()
            t = summary.timed("lifecycle", t)
            if full:
                await escalate(conn, policies, judging, at, summary, self._metrics, self._outgoing)
                t = summary.timed("escalate", t)
            await self._planner.plan(
                conn, policies, campaigns, self._default(), at, summary, unjudged
            )
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

    def _changed(self, current: asyncpg.Record, d: dict[str, Any], payload: str) -> bool:
        """Whether an open alert's stored figures differ from `d` (`payload`, its JSON)."""
        written = self._written.get(current["id"])
        if written is not None and written[0] == current["version"]:
            return written[1] != payload
        raw = current["details"]
        if (json.loads(raw) if isinstance(raw, str) else raw) != d:
            return True
        self._written[current["id"]] = (current["version"], payload)
        return False

    def _judge(
        self,
        judged: Sequence[Judged],
        campaigns: dict[str, Any],
        policies: dict[str, Policy],
        open_: dict[AlertKey, asyncpg.Record],
        ranks: dict[Key, dict[str, Any]],
        at: datetime,
        full: bool,
        versions: Mapping[str, reference_sql.Version] | None = None,
    ) -> tuple[list[Todo], list[tuple[int, str]]]:
        """Which alerts change (to be stepped under their locks) and which only get fresh
        figures. A full pass also closes open alerts whose key is no longer judged (its
        target was removed, its campaign deleted, a cut-over replaced its unit: `versions`,
        of those alerts' units, tells which). A feed pass stamps every alert of its keys; a
        full pass (stamped as a whole, `mark_evaluated`) rewrites only alerts whose figures
        changed."""
        todo: list[Todo] = []
        touched: list[tuple[int, str]] = []
        seen: set[Key] = set()
        # per campaign, not per key: a policy is a pydantic model (255,000 alerts a pass)
        fallback = self._default()
        for_of: dict[tuple[str | None, Rule], timedelta] = {
            (c, r): p.rule(r).for_ for c, p in [*policies.items(), (None, fallback)] for r in Rule
        }
        enabled_of = {c: p.enabled() for c, p in policies.items()}

        def consider(
            key: Key, rule: Rule, holds: bool, d: dict[str, Any], payload: list[str]
        ) -> None:
            """`payload`: the JSON of `d` once made, shared by the rules of one key."""
            current = open_.get(AlertKey(key, rule.value))
            if current is None and not holds:
                return
            campaign_id = key.campaign_id
            for_ = for_of[campaign_id if campaign_id in policies else None, rule]
            _, change = step(alert_of(current), holds, at, for_)
            if change is Change.NONE:
                if current is not None:
                    if not payload:
                        payload.append(json.dumps(d))
                    if not full or self._changed(current, d, payload[0]):
                        touched.append((current["id"], payload[0]))
                return
            todo.append(Todo(key, rule, holds, d, change))

        for j in judged:
            v, key = j.verdict, j.key
            seen.add(key)
            enabled = enabled_of[v.campaign_id]
            verdicts = {r: h and r in enabled for r, h in held(v, j.campaign, at).items()}
            ended = j.campaign.ended(at)
            if full:
                # ranked at the briefing, but alerted only while its target runs (past a
                # unit's own deadline its rank alert closes with the rest of its alerts; it
                # kept firing, and escalating, to the campaign's end) and the unit is not
                # done (`rules.ranked_alerted`)
                verdicts[Rule.BOTTOM_RANK] = (
                    Rule.BOTTOM_RANK in enabled
                    and key in ranks
                    and ranked_alerted(v, j.campaign, at)
                )
            # a unit's own deadline may come before the campaign's: past it, its alerts
            # close with the final word too, not as "back on track"
            d = {
                **details(v, ranks.get(key)),
                "campaign_ended": ended,
                "deadline_passed": at >= v.deadline,
            }
            payload: list[str] = []
            for rule, holds in verdicts.items():
                consider(key, rule, holds, d, payload)
        if full:
            for alert, row in open_.items():
                if alert.key in seen:
                    continue
                raw = row["details"]
                d = json.loads(raw) if isinstance(raw, str) else dict(raw)
                campaign = campaigns.get(alert.key.campaign_id)
                d["campaign_ended"] = campaign is not None and campaign.ended(at)
                d["deadline_passed"] = d["campaign_ended"] or (
                    "deadline" in d and datetime.fromisoformat(d["deadline"]) <= at
                )
                if not d["deadline_passed"]:
                    # nothing cleared: the key is no longer judged. Its old figures are no
                    # "back on track"; its chief is told why it closed instead
                    d.update(closed_because(campaign, (versions or {}).get(alert.key.unit), at))
                consider(alert.key, Rule(alert.rule), False, d, [])
        return todo, touched
