"""Group: one message per recipient. Each group is planned under its row lock (replicas
never both send the same change or repeat slot) and the message it decides is queued in
the same transaction."""

import math
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import Gauge

from services.notifier.languages import LANGUAGES
from services.notifier.links import LinkIssuer
from services.notifier.messages import Outgoing, alert_model, campaign_model, recipient_model
from services.notifier.policy import Policy
from services.notifier.render import Renderer
from services.notifier.repository import alerts as alert_sql
from services.notifier.repository import groups as group_sql
from services.notifier.repository import reference as reference_sql
from services.notifier.responses import note_responses, repeat_quieted
from services.notifier.rules import (
    GroupPlan,
    GroupState,
    Member,
    Rule,
    Silence,
    inhibited_by,
    listed_firing,
    outranking,
    plan_group,
)
from services.notifier.summary import Summary
from tiendo.board.campaign import Campaign
from tiendo.board.isolation import its_own, logged
from tiendo.database import Connection
from tiendo.logs import get_logger

log = get_logger(__name__)
Sketch = dict[int, tuple[str, GroupState, list[Member]]]


def silence_of(row: "Mapping[str, Any] | asyncpg.Record") -> Silence:
    """A stored silence. One ended early (DELETE) ends at its expiry: the one reading of
    `expired_at` for evaluation, `GET /v1/alerts` and `GET /v1/silences` (docs/alerts.md)."""
    return Silence(
        id=row["id"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"]
        if row["expired_at"] is None
        else min(row["ends_at"], row["expired_at"]),
        campaign_id=row["campaign_id"],
        unit=row["unit"],
        indicator=row["indicator"],
        rule=row["rule"],
    )


def silenced_by(
    silences: Sequence[Silence],
    campaign_id: str,
    unit: str,
    ancestors: Sequence[str],
    indicator: str,
    rule: str,
    at: datetime,
) -> list[int]:
    lineage = [unit, *ancestors]
    return [s.id for s in silences if s.matches(campaign_id, lineage, indicator, rule, at)]


def sketch(
    rows: Sequence["Mapping[str, Any] | asyncpg.Record"], silences: Sequence[Silence], at: datetime
) -> Sketch:
    """The groups of member rows (`group_sql.group_members`, `untold_members`), each member
    with what it is to its recipient: silenced, inhibited. The one place inhibition is
    decided: by the rules co-firing on its key in its group that no silence mutes."""
    out: Sketch = {}
    for r in rows:
        if r["group_id"] not in out:
            state = GroupState(r["seq"], r["anchor_seq"], r["anchor_at"], r["repeat_slot"])
            out[r["group_id"]] = (r["campaign_id"], state, [])

        def muted(rule: str, r: "Mapping[str, Any] | asyncpg.Record" = r) -> bool:
            """Whether a silence mutes `rule` on the member's key (unit, indicator)."""
            campaign_id, unit, ancestors = r["campaign_id"], r["unit"], r["ancestors"]
            return bool(
                silenced_by(silences, campaign_id, unit, ancestors, r["indicator"], rule, at)
            )

        visible = [rule for rule in r["firing_rules"] if not muted(rule)]
        inhibited = inhibited_by(r["rule"], visible) is not None
        out[r["group_id"]][2].append(
            Member(
                r["alert_id"],
                r["level"],
                r["state"],
                r["changed_at"],
                r["notified"],
                muted(r["rule"]),
                inhibited,
            )
        )
    return out


async def listed_now(
    conn: Connection, campaign_id: str, recipients: Sequence[str], at: datetime
) -> dict[str, list[Member]]:
    """Per recipient among `recipients`, the firing members of its group in the campaign
    that its group's messages list at `at`: the planner's own selection (`sketch` with the
    silences active then, `rules.listed_firing`), so that a digest counts and lists what
    the chief is told, inhibited and silenced alerts left out, escalated ones in."""
    silences = [silence_of(r) for r in await reference_sql.active_silences(conn, at)]
    rows = await group_sql.members_of_recipients(conn, campaign_id, recipients)
    recipient_of = {r["group_id"]: r["recipient"] for r in rows}
    out: dict[str, list[Member]] = {}
    for group_id, (_, _, members) in sketch(rows, silences, at).items():
        listed = set(listed_firing(members))
        out[recipient_of[group_id]] = [m for m in members if m.alert_id in listed]
    return out


def mutable_rules(silences: Sequence[Silence]) -> list[str]:
    """The rules an alert may be muted on by one of `silences` (every rule when one of
    them names none): an alert of another rule is visible whatever its unit."""
    if any(s.rule is None for s in silences):
        return [r.value for r in Rule]
    return sorted({s.rule for s in silences if s.rule is not None})


def may_plan(
    group: "Mapping[str, Any] | asyncpg.Record",
    untold: Sequence[Member],
    policy: Policy,
    at: datetime,
) -> bool:
    """Whether `plan_group` can decide anything for the group at `at`, from its summary
    row (`group_sql.groups`) and its untold firing members (`group_sql.untold_members`,
    sketched): a resolved member, an untold member its messages would list (`Member.shown`)
    waiting `group_wait`, or a repeat slot passed. Never false where `plan_group` would
    decide something: the members are judged by the same `sketch`."""
    if group["has_resolved"]:
        return True
    waiting = [m.changed_at for m in untold if m.shown and m.news]
    if waiting and min(waiting) + policy.group_wait <= at:
        return True
    anchor, interval = group["anchor_at"], policy.repeat_interval
    return (
        anchor is not None
        and interval > timedelta(0)
        and math.floor((at - anchor) / interval) > group["repeat_slot"]
    )


class Planner:
    """Decides and queues each group's message (one chief's, of one campaign): a group
    whose message fails (a bug met by its render or link) is left for the next pass, and
    the others go; `failing` exports how many fail per campaign (docs/alerts.md)."""

    def __init__(
        self,
        renderer: Renderer,
        outgoing: Outgoing,
        links: LinkIssuer | None = None,
        failing: Gauge | None = None,
    ) -> None:
        self._renderer = renderer
        self._outgoing = outgoing
        self._links = links
        self._gauge = failing
        # group → (its campaign, what it failed with) at the last pass that tried it
        self._failing: dict[int, tuple[str, str]] = {}
        self._labelled: set[str] = set()

    async def plan(
        self,
        conn: Connection,
        policies: dict[str, Policy],
        campaigns: dict[str, Campaign],
        fallback: Policy,
        at: datetime,
        summary: Summary,
        unjudged: Collection[str] = (),
    ) -> None:
        """Decide and queue each group's message due at `at`. `unjudged`: campaigns left
        out of judging (waiting for their tree, or failing since a full pass last judged
        them): their groups' repeats wait, the slot kept, until a full pass judges them
        again; a reminder says the alerts still hold, which nobody knows meanwhile."""
        silences = [silence_of(r) for r in await reference_sql.active_silences(conn, at)]
        untold = sketch(
            await group_sql.untold_members(conn, outranking(), mutable_rules(silences)),
            silences,
            at,
        )
        candidates = [
            g["id"]
            for g in await group_sql.groups(conn)
            if may_plan(
                g,
                untold[g["id"]][2] if g["id"] in untold else (),
                policies.get(g["campaign_id"], fallback),
                at,
            )
        ]
        sketched_now = sketch(await group_sql.group_members(conn, candidates), silences, at)
        # a failing group not tried this pass (held, or planned by another replica) is
        # still failing; one no longer due or gone is not
        failed = {g: v for g, v in self._failing.items() if g in sketched_now}
        for group_id, (campaign_id, sketched, members) in sketched_now.items():
            policy = policies.get(campaign_id, fallback)
            held = campaign_id in unjudged
            plan = plan_group(sketched, members, at, policy.group_wait, policy.repeat_interval)
            if (plan.kind is None or (held and plan.kind == "repeat")) and not plan.drop:
                if plan.kind is None:
                    failed.pop(group_id, None)  # nothing left to send
                continue  # nothing to do (a held group: not locked at every pass)
            told = len(summary.messages)
            try:
                if await self._plan_locked(
                    conn, group_id, campaign_id, silences, policy, held, campaigns, at, summary
                ):
                    failed.pop(group_id, None)
            except Exception as e:  # a bug met by this group's message (its render, say)
                if not its_own(conn, e):
                    raise
                del summary.messages[told:]  # rolled back with the group
                before = self._failing.get(group_id, (campaign_id, None))[1]
                said = logged(
                    e,
                    before,
                    ("group_message_failed", "group_message_still_failing"),
                    campaign=campaign_id,
                    group=group_id,
                )
                failed[group_id] = (campaign_id, said)
        self._failing = failed
        self._export(campaigns)

    def _export(self, campaigns: Mapping[str, Campaign]) -> None:
        """The failing groups per campaign: 0 for every campaign of the pass without one (a
        board shows 0, not no data), gone with the campaign."""
        if self._gauge is None:
            return
        counts = dict.fromkeys(campaigns, 0)
        for campaign_id, _ in self._failing.values():
            counts[campaign_id] = counts.get(campaign_id, 0) + 1
        for campaign_id in self._labelled - counts.keys():
            self._gauge.remove(campaign_id)
        for campaign_id, n in counts.items():
            self._gauge.labels(campaign_id).set(n)
        self._labelled = set(counts)

    async def _plan_locked(
        self,
        conn: Connection,
        group_id: int,
        campaign_id: str,
        silences: Sequence[Silence],
        policy: Policy,
        held: bool,
        campaigns: Mapping[str, Campaign],
        at: datetime,
        summary: Summary,
    ) -> bool:
        """Decide and queue one group's message, its row locked, in a transaction of its
        own: a group that fails keeps its state for the next pass, the others go on. False:
        another replica is planning it right now (this one did not try)."""
        async with conn.transaction():
            if not await group_sql.lock_group(conn, group_id):
                return False
            fresh = sketch(await group_sql.group_members(conn, [group_id]), silences, at)
            if group_id not in fresh:
                return True
            _, state, locked_members = fresh[group_id]
            plan = plan_group(state, locked_members, at, policy.group_wait, policy.repeat_interval)
            if plan.drop:
                await group_sql.drop_members(conn, group_id, plan.drop)
            if plan.kind is None or (held and plan.kind == "repeat"):
                return True  # a held repeat: the slot kept for the pass that judges it
            if plan.kind == "repeat" and await repeat_quieted(
                conn,
                list(plan.firing),
                state.anchor_at,
                at,
                await group_sql.group_recipient(conn, group_id),
            ):
                # acknowledged since the last change message, or snoozed: the slot passes
                await group_sql.update_group(conn, group_id, plan.group, at)
                return True
            await group_sql.update_group(conn, group_id, plan.group, at)
            if plan.mark_notified:
                await group_sql.mark_notified(conn, group_id, plan.mark_notified)
            campaign = campaigns.get(campaign_id)
            ended = campaign is not None and campaign.ended(at)
            # last: what queuing counts and logs is then undone only by a failed commit
            await self._queue(
                conn, group_id, campaign_id, locked_members, plan, policy, ended, at, summary
            )
        return True

    async def _queue(
        self,
        conn: Connection,
        group_id: int,
        campaign_id: str,
        members: Sequence[Member],
        plan: GroupPlan,
        policy: Policy,
        ended: bool,
        at: datetime,
        summary: Summary,
    ) -> None:
        assert plan.kind is not None
        recipient_code = await group_sql.group_recipient(conn, group_id)
        recipient = await reference_sql.unit(conn, recipient_code)
        level_of = {m.alert_id: m.level for m in members}
        ids = list(plan.firing) + list(plan.resolved)
        rows = {r["id"]: r for r in await alert_sql.alerts_by_id(conn, ids)}
        indicators = await reference_sql.indicator_names(conn)
        message_id = f"{campaign_id}/{recipient_code}/{plan.key}"
        campaign = await campaign_model(conn, campaign_id)
        link = None
        if (
            self._links is not None
            and plan.firing
            and not ended
            and self._outgoing.reaches(recipient)
        ):
            # the chief's personal page: acknowledge, snooze, explain (docs/briefing.md);
            # made only for a chief a contact of their own reaches (the operators' copy
            # and a message that reached nobody carry none)
            link = await self._links.issue(
                conn, campaign_id, recipient_code, list(plan.firing), message_id, at
            )

        async def build(language: str) -> dict[str, Any]:
            """The message in `language`, before its texts: each contact reads its own
            (messages.Outgoing)."""
            rule_words, _ = self._renderer.words(language)

            def model(alert_id: int) -> dict[str, Any]:
                return alert_model(
                    rows[alert_id],
                    level_of.get(alert_id, 0),
                    alert_id in plan.new,
                    indicators,
                    rule_words,
                    language,
                )

            body: dict[str, Any] = {
                "kind": plan.kind,
                "message_id": message_id,
                "campaign": campaign,
                "campaign_ended": ended and plan.kind == "resolved",
                "recipient": recipient_model(recipient, recipient_code),
                "firing": [model(i) for i in plan.firing if i in rows],
                "resolved": [model(i) for i in plan.resolved if i in rows],
                "now": at.isoformat(),
                "language": language,
            }
            # the parent chief hears whether the unit acknowledged, explained, committed
            await note_responses(conn, campaign_id, body["firing"], language, at)
            return body

        def rendered(body: dict[str, Any]) -> dict[str, Any]:
            text = self._renderer.alert(body["language"], body)
            return {**body, "subject": text.subject, "text": text.text, "chat": text.chat}

        # every language a contact may read, built ahead: the outbox renders synchronously.
        # Rendered when first asked for: most messages are read in one language, and the
        # templates were half of the pass that told 11,000 chiefs their first alerts
        # (bench.one_state). The chief's own contacts get the chief's link; the operators'
        # fallback webhook the same message without it (the link is the authority to act as
        # the chief, so it must only reach the chief: docs/briefing.md, "The chief's link").
        built = {language: await build(language) for language in LANGUAGES}
        texts: dict[tuple[str, bool], dict[str, Any]] = {}

        def render_in(language: str, personal: bool) -> dict[str, Any]:
            key = (language, personal and link is not None)
            if key not in texts:
                body = built[language]
                texts[key] = rendered({**body, "link": link} if key[1] else body)
            return texts[key]

        def render(language: str) -> dict[str, Any]:
            return render_in(language, True)

        def render_shared(language: str) -> dict[str, Any]:
            return render_in(language, False)

        queued = await self._outgoing.enqueue(
            conn,
            kind=plan.kind,
            message_id=message_id,
            recipient=recipient,
            recipient_code=recipient_code,
            render=render,
            language=policy.language,
            group_id=group_id,
            campaign_id=campaign_id,
            alert_ids=ids,
            fallback=True,
            render_shared=render_shared,
        )
        summary.messages.append((message_id, recipient_code, plan.kind))
        log.info(
            "group_message_queued",
            message_id=message_id,
            kind=plan.kind,
            firing=len(plan.firing),
            resolved=len(plan.resolved),
            channels=queued,
        )
