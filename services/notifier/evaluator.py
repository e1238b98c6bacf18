"""One evaluation of the alert rules at a time `at` (`Evaluator.evaluate_at`): verdicts from
the pure rules, lifecycle changes and the group memberships they cause written in one
transaction per alert, escalations, then the per-recipient planning that queues
notifications (the outbox) and the scheduled digests.

`at` always comes from the caller's one `Clock`: the service's clock loop and feed consumer
pass `clock.now()`; a test or a replay passes simulated times and runs a campaign's whole
alert timeline in seconds. Every step is safe to run concurrently in several replicas: row
locks serialise the decisions and unique keys make each message exist once."""

import json
import time as monotonic
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.notifier import repository
from services.notifier.metrics import NotifierMetrics
from services.notifier.policy import Policy, effective
from services.notifier.render import Renderer
from services.notifier.rules import (
    Alert,
    AlertState,
    Change,
    GroupPlan,
    GroupState,
    Member,
    Rule,
    Silence,
    UnitState,
    bottom,
    briefing_slot,
    conditions,
    digest_slot,
    escalation_level,
    inhibited_by,
    judge,
    leaderboard,
    plan_group,
    step,
)
from services.notifier.settings import NotifierSettings
from tiendo.database import Connection
from tiendo.logs import get_logger
from tiendo.pace import Progress, Status, run_rate_window

log = get_logger(__name__)
Key = tuple[str, str, str]
SAMPLE_RETENTION = timedelta(days=8)


def unit_state(row: asyncpg.Record) -> UnitState:
    return UnitState(
        campaign_id=row["campaign_id"],
        unit=row["unit"],
        indicator=row["indicator"],
        value=row["value"],
        baseline=row["baseline"],
        target=row["target"],
        starts_at=row["starts_at"],
        deadline=row["deadline"],
        last_event_at=row["last_event_at"],
        behind_threshold=row["behind_threshold"],
        stale_after=row["stale_after"],
        unit_name=row["unit_name"],
        level=row["level"],
        parent=row["parent"],
        timezone=row["timezone"],
    )


def _alert(row: asyncpg.Record | None) -> Alert | None:
    if row is None:
        return None
    return Alert(AlertState(row["state"]), row["since"], row["fired_at"], row["resolved_at"])


def _round(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


@dataclass
class Summary:
    """What one evaluation did (for logs, metrics, tests and replays)."""

    at: datetime
    evaluated: int = 0
    changes: list[tuple[Key, str, Change]] = field(default_factory=list)
    escalations: list[tuple[int, str, int]] = field(default_factory=list)
    messages: list[tuple[str, str, str]] = field(default_factory=list)  # key, recipient, kind
    digests: int = 0


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
        self._channels = frozenset(channels)
        self._metrics = metrics or NotifierMetrics()
        self._pruned_at: float = 0.0

    # -- entry point ----------------------------------------------------------------------

    async def evaluate_at(
        self, pool: asyncpg.Pool, at: datetime, keys: Sequence[Key] | None = None
    ) -> Summary:
        """Evaluate every unit state (`keys` None: the clock's full pass, with bottom_rank,
        escalations and digests) or only `keys` (a feed update), at time `at`."""
        started = monotonic.perf_counter()
        full = keys is None
        summary = Summary(at)
        async with pool.acquire() as conn:
            overrides = await repository.policies(conn)
            rows = await (
                repository.states(conn) if keys is None else repository.states_of(conn, keys)
            )
            states = [unit_state(r) for r in rows]
            policies = {s.campaign_id: self._policy(overrides, s.campaign_id) for s in states}
            ago, known = await self._window_values(conn, states, at)
            open_ = await repository.open_alerts(conn, keys)
            ranks = await self._briefing_ranks(conn, states, policies, at) if full else {}
        progress: dict[Key, Progress] = {}
        todo: list[tuple[UnitState, Rule, bool, dict[str, Any]]] = []
        touched: list[tuple[int, str]] = []
        for s in states:
            policy = policies[s.campaign_id]
            p, held = conditions(s, at, ago.get(s.key), s.key in known)
            progress[s.key] = p
            enabled = policy.enabled()
            verdicts: dict[Rule, bool] = {r: held[r] and r in enabled for r in held}
            if full:
                verdicts[Rule.BOTTOM_RANK] = Rule.BOTTOM_RANK in policy.enabled() and s.key in ranks
            details = _details(s, p, ranks.get(s.key))
            payload = json.dumps(details)
            for rule, holds in verdicts.items():
                current = open_.get((*s.key, rule.value))
                if current is None and not holds:
                    continue
                _, change = step(_alert(current), holds, at, policy.rule(rule).for_)
                if change is Change.NONE:
                    if current is not None:
                        touched.append((current["id"], payload))
                    continue
                todo.append((s, rule, holds, details))
        summary.evaluated = len(states)
        async with pool.acquire() as conn:
            await repository.touch_alerts(conn, at, touched)
            for s, rule, holds, details in todo:
                change = await self._apply(conn, s, rule, holds, details, policies, at)
                if change is not Change.NONE:
                    summary.changes.append((s.key, rule.value, change))
                    self._metrics.transitions.labels(rule.value, change.value).inc()
            if full:
                await self._escalate(conn, overrides, at, summary)
            await self._plan_groups(conn, overrides, at, summary)
            if full:
                await self._digests(conn, states, policies, progress, known, open_, at, summary)
                await self._prune(conn, at)
            counts = {r["rule"]: r["n"] for r in await conn.fetch(repository.COUNT_FIRING)}
        for rule in Rule:
            self._metrics.firing.labels(rule.value).set(counts.get(rule.value, 0))
        trigger = "clock" if full else "feed"
        self._metrics.evaluations.labels(trigger).inc(len(states))
        self._metrics.evaluation_seconds.labels(trigger).observe(monotonic.perf_counter() - started)
        return summary

    def _policy(self, overrides: dict[str, dict[str, Any]], campaign_id: str) -> Policy:
        return effective(self._settings, overrides.get(campaign_id, {}))

    # -- inputs -----------------------------------------------------------------------------

    async def _window_values(
        self, conn: Connection, states: Sequence[UnitState], at: datetime
    ) -> tuple[dict[Key, int], set[Key]]:
        """Each key's value at the start of its run-rate window, and which keys have one."""
        wanted: list[tuple[Key, datetime]] = []
        ago: dict[Key, int] = {}
        known: set[Key] = set()
        for s in states:
            judged = min(at, s.deadline)
            window = run_rate_window(s.plan, judged)
            if window is None:
                continue
            start = judged - window
            if start <= s.starts_at:
                # A window from the start: the value then was the baseline.
                ago[s.key] = s.baseline
                known.add(s.key)
            else:
                wanted.append((s.key, start))
        sampled = await repository.values_at(conn, wanted)
        ago.update(sampled)
        known.update(sampled)
        return ago, known

    async def _briefing_ranks(
        self,
        conn: Connection,
        states: Sequence[UnitState],
        policies: dict[str, Policy],
        at: datetime,
    ) -> dict[Key, dict[str, Any]]:
        """The units in the bottom N of the latest weekly briefing of each campaign."""
        out: dict[Key, dict[str, Any]] = {}
        by_campaign: dict[str, list[UnitState]] = defaultdict(list)
        for s in states:
            by_campaign[s.campaign_id].append(s)
        for campaign_id, members in by_campaign.items():
            config = policies[campaign_id].bottom_rank
            if not config.enabled or config.n <= 0:
                continue
            first = members[0]
            slot = briefing_slot(
                at, first.timezone, config.weekday, policies[campaign_id].briefing_time()
            )
            if slot <= first.starts_at or slot > first.deadline:
                continue
            stored = await conn.fetch(repository.SELECT_RANKS, campaign_id, slot)
            if not stored:
                await self._store_ranks(conn, campaign_id, slot, members, config.level, config.n)
                stored = await conn.fetch(repository.SELECT_RANKS, campaign_id, slot)
            for r in stored:
                if r["unit"]:
                    out[(campaign_id, r["unit"], r["indicator"])] = {
                        "rank": r["rank"],
                        "of_units": r["of_units"],
                        "briefing_at": slot.isoformat(),
                    }
        return out

    async def _store_ranks(
        self,
        conn: Connection,
        campaign_id: str,
        slot: datetime,
        states: Sequence[UnitState],
        level: int,
        n: int,
    ) -> None:
        # Figures as known at the first evaluation after the briefing time; frozen for the
        # week so every replica and every later evaluation agrees on who was ranked last.
        by_indicator: dict[str, list[tuple[str, float | None, float | None]]] = defaultdict(list)
        for s in states:
            if s.level != level:
                continue
            p = judge(s, slot, None)
            by_indicator[s.indicator].append((s.unit, p.pct, p.pace))
        columns: tuple[list[str], list[str], list[int], list[int], list[float | None]] = (
            [],
            [],
            [],
            [],
            [],
        )
        for indicator, entries in by_indicator.items():
            for r in bottom(leaderboard(entries), n):
                columns[0].append(indicator)
                columns[1].append(r.unit)
                columns[2].append(r.rank)
                columns[3].append(r.of_units)
                columns[4].append(r.pct)
        async with conn.transaction():
            if await conn.fetchval(repository.RANKS_STORED, campaign_id, slot) is None:
                return  # another replica stored this briefing's ranking first
            await conn.execute(repository.INSERT_RANKS, campaign_id, slot, *columns)

    # -- lifecycle --------------------------------------------------------------------------

    async def _apply(
        self,
        conn: Connection,
        s: UnitState,
        rule: Rule,
        holds: bool,
        details: dict[str, Any],
        policies: dict[str, Policy],
        at: datetime,
    ) -> Change:
        """Step one alert under its row lock and record the change (own transaction)."""
        payload = json.dumps(details)
        for_ = policies[s.campaign_id].rule(rule).for_
        async with conn.transaction():
            current = await conn.fetchrow(repository.SELECT_OPEN_ALERT, *s.key, rule.value)
            if current is not None and current["last_evaluated_at"] > at:
                return Change.NONE  # a later evaluation already decided
            new, change = step(_alert(current), holds, at, for_)
            if change is Change.NONE:
                return change
            if change is Change.DROPPED:
                assert current is not None
                await conn.execute(repository.DELETE_ALERT, current["id"])
                return change
            assert new is not None
            if current is None:
                alert_id = await conn.fetchval(
                    repository.INSERT_ALERT,
                    *s.key,
                    rule.value,
                    new.state.value,
                    new.since,
                    new.fired_at,
                    at,
                    payload,
                )
                if alert_id is None:
                    return Change.NONE  # another replica opened it a moment ago
            else:
                alert_id = current["id"]
                await conn.execute(
                    repository.UPDATE_ALERT,
                    alert_id,
                    new.state.value,
                    new.fired_at,
                    new.resolved_at,
                    at,
                    payload,
                )
            if change is Change.FIRED:
                await repository.add_member(conn, s.campaign_id, s.unit, alert_id, 0, at)
            elif change is Change.RESOLVED:
                await repository.resolve_members(conn, alert_id, at)
        log.info(
            "alert_" + change.value,
            campaign=s.campaign_id,
            unit=s.unit,
            indicator=s.indicator,
            rule=rule.value,
            at=at.isoformat(),
        )
        return change

    async def _escalate(
        self, conn: Connection, overrides: dict[str, dict[str, Any]], at: datetime, summary: Summary
    ) -> None:
        """Add alerts firing long enough to the groups of the chiefs above their unit."""
        for a in await conn.fetch(repository.SELECT_FIRING):
            policy = self._policy(overrides, a["campaign_id"])
            target = escalation_level(
                a["fired_at"], at, policy.escalate_after, policy.escalation_levels
            )
            if target <= a["escalation_level"]:
                continue
            async with conn.transaction():
                locked = await conn.fetchrow(repository.LOCK_FIRING_ALERT, a["id"])
                if locked is None or locked["escalation_level"] >= target:
                    continue  # resolved meanwhile, or another replica escalated it
                unit = await repository.unit(conn, a["unit"])
                ancestors: list[str] = list(unit["ancestors"]) if unit else []
                for level in range(locked["escalation_level"] + 1, target + 1):
                    if level > len(ancestors):
                        break
                    recipient = ancestors[-level]
                    # Due since the moment the level was reached, however late it is seen.
                    due = min(at, locked["fired_at"] + policy.escalate_after * level)
                    await repository.add_member(
                        conn, a["campaign_id"], recipient, a["id"], level, due
                    )
                    summary.escalations.append((a["id"], recipient, level))
                    self._metrics.escalations.inc()
                    log.info(
                        "alert_escalated",
                        alert_id=a["id"],
                        unit=a["unit"],
                        recipient=recipient,
                        level=level,
                    )
                await conn.execute(repository.SET_ESCALATION, a["id"], target, at)

    # -- grouping and messages --------------------------------------------------------------

    async def _plan_groups(
        self, conn: Connection, overrides: dict[str, dict[str, Any]], at: datetime, summary: Summary
    ) -> None:
        silences = [_silence(r) for r in await repository.active_silences(conn, at)]
        sketch = _groups(await repository.group_members(conn), silences, at)
        for group_id, (campaign_id, sketched, sketched_members) in sketch.items():
            policy = self._policy(overrides, campaign_id)
            plan = plan_group(
                sketched, sketched_members, at, policy.group_wait, policy.repeat_interval
            )
            if plan.kind is None and not plan.drop:
                continue
            async with conn.transaction():
                if await conn.fetchrow(repository.LOCK_GROUP, group_id) is None:
                    continue  # another replica is planning this group right now
                fresh = _groups(await repository.group_members(conn, group_id), silences, at)
                if group_id not in fresh:
                    continue
                recipient_campaign, state, members = fresh[group_id]
                plan = plan_group(state, members, at, policy.group_wait, policy.repeat_interval)
                if plan.kind is not None:
                    await self._queue(
                        conn, group_id, recipient_campaign, members, plan, policy, at, summary
                    )
                    await conn.execute(
                        repository.UPDATE_GROUP,
                        group_id,
                        plan.group.seq,
                        plan.group.anchor_seq,
                        plan.group.anchor_at,
                        plan.group.repeat_slot,
                        at,
                    )
                    if plan.mark_notified:
                        await conn.execute(
                            repository.MARK_NOTIFIED, group_id, list(plan.mark_notified)
                        )
                if plan.drop:
                    await conn.execute(repository.DROP_MEMBERS, group_id, list(plan.drop))

    async def _queue(
        self,
        conn: Connection,
        group_id: int,
        campaign_id: str,
        members: Sequence[Member],
        plan: GroupPlan,
        policy: Policy,
        at: datetime,
        summary: Summary,
    ) -> None:
        recipient_code = await conn.fetchval(
            "SELECT recipient FROM alert_groups WHERE id = $1", group_id
        )
        recipient = await repository.unit(conn, recipient_code)
        level_of = {m.alert_id: m.level for m in members}
        ids = list(plan.firing) + list(plan.resolved)
        rows = {r["id"]: r for r in await conn.fetch(repository.SELECT_ALERTS_BY_ID, ids)}
        language = policy.language
        campaign = await _campaign(conn, campaign_id)
        indicators = await repository.indicator_names(conn)
        rule_words, _ = self._renderer.words(language)

        def model(alert_id: int) -> dict[str, Any]:
            return _alert_model(
                rows[alert_id],
                level_of.get(alert_id, 0),
                alert_id in plan.new,
                indicators,
                rule_words,
                language,
            )

        message_id = f"{campaign_id}/{recipient_code}/{plan.key}"
        body: dict[str, Any] = {
            "kind": plan.kind,
            "message_id": message_id,
            "campaign": campaign,
            "recipient": _recipient(recipient, recipient_code),
            "firing": [model(i) for i in plan.firing if i in rows],
            "resolved": [model(i) for i in plan.resolved if i in rows],
            "now": at.isoformat(),
            "language": language,
        }
        text = self._renderer.alert(language, body)
        body.update(subject=text.subject, text=text.text, chat=text.chat)
        assert plan.kind is not None
        queued = await self._enqueue(
            conn,
            kind=plan.kind,
            message_id=message_id,
            recipient=recipient,
            recipient_code=recipient_code,
            body=body,
            group_id=group_id,
            campaign_id=campaign_id,
            alert_ids=ids,
            fallback=True,
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

    async def _enqueue(
        self,
        conn: Connection,
        *,
        kind: str,
        message_id: str,
        recipient: asyncpg.Record | None,
        recipient_code: str,
        body: dict[str, Any],
        group_id: int | None,
        campaign_id: str,
        alert_ids: Sequence[int],
        fallback: bool,
    ) -> int:
        """One notification row per channel the recipient can be reached on."""
        addresses = _addresses(
            recipient, self._settings.webhook_url if fallback else None, self._channels
        )
        if not addresses:
            self._metrics.notifications.labels("none", "no_address").inc()
            log.warning("no_recipient_address", recipient=recipient_code, message_id=message_id)
            return 0
        queued = 0
        for channel, address in addresses:
            delivery_id = f"{message_id}/{channel}"
            created = await repository.insert_notification(
                conn,
                dedup_key=delivery_id,
                kind=kind,
                recipient=recipient_code,
                channel=channel,
                address=address,
                body={**body, "delivery_id": delivery_id},
                group_id=group_id,
                campaign_id=campaign_id,
                subject=str(body.get("subject", "")),
                language=str(body.get("language", "vi")),
                alert_ids=alert_ids,
            )
            if created is not None:
                queued += 1
                self._metrics.queued.labels(kind, channel).inc()
        return queued

    async def _digests(
        self,
        conn: Connection,
        states: Sequence[UnitState],
        policies: dict[str, Policy],
        progress: dict[Key, Progress],
        known: set[Key],
        open_: dict[tuple[str, str, str, str], asyncpg.Record],
        at: datetime,
        summary: Summary,
    ) -> None:
        """The scheduled summary per chief, once per slot (the dedup key is the slot)."""
        grace = timedelta(seconds=self._settings.digest_grace_seconds)
        firing: Counter[tuple[str, str]] = Counter(
            (k[0], k[1]) for k, a in open_.items() if a["state"] == "firing"
        )
        by_campaign: dict[str, list[UnitState]] = defaultdict(list)
        for s in states:
            by_campaign[s.campaign_id].append(s)
        for campaign_id, members in by_campaign.items():
            policy = policies[campaign_id]
            first = members[0]
            slot = digest_slot(at, first.timezone, policy.digest_clock(), grace)
            if slot is None or slot < first.starts_at or slot > first.deadline + timedelta(days=1):
                continue
            stamp = slot.strftime("%Y%m%dT%H%M%z")
            prefix = f"digest/{campaign_id}/{stamp}/"
            done = {
                r["dedup_key"][len(prefix) :].split("/")[0]
                for r in await conn.fetch(repository.SELECT_DEDUP_KEYS_LIKE, prefix + "%")
            }
            recipients: dict[str, asyncpg.Record] = {}
            for r in await conn.fetch(repository.DIGEST_RECIPIENTS, campaign_id):
                recipients.setdefault(r["unit"], r)
            pending = [u for u in recipients if u not in done]
            if not pending:
                continue
            language = policy.language
            campaign = await _campaign(conn, campaign_id)
            indicators = await repository.indicator_names(conn)
            _, status_words = self._renderer.words(language)
            own: dict[str, list[UnitState]] = defaultdict(list)
            children: dict[str, set[str]] = defaultdict(set)
            names = {s.unit: s.unit_name for s in members}
            for s in members:
                own[s.unit].append(s)
                p = progress.get(s.key)
                if s.parent and p is not None and p.status in (Status.BEHIND, Status.STALE):
                    children[s.parent].add(s.unit)
            for code in pending:
                message_id = f"digest/{campaign_id}/{stamp}/{code}"
                body: dict[str, Any] = {
                    "kind": "digest",
                    "message_id": message_id,
                    "campaign": campaign,
                    "recipient": _recipient(recipients[code], code),
                    "slot": slot.isoformat(),
                    "indicators": [
                        _progress_model(
                            s,
                            progress[s.key],
                            s.key in known,
                            indicators,
                            status_words,
                            language,
                        )
                        for s in own[code]
                        if s.key in progress
                    ],
                    "children_behind": sorted(names.get(c, c) for c in children.get(code, ())),
                    "firing_count": firing[(campaign_id, code)],
                    "now": at.isoformat(),
                    "language": language,
                }
                text = self._renderer.digest(language, body)
                body.update(subject=text.subject, text=text.text, chat=text.chat)
                async with conn.transaction():
                    queued = await self._enqueue(
                        conn,
                        kind="digest",
                        message_id=message_id,
                        recipient=recipients[code],
                        recipient_code=code,
                        body=body,
                        group_id=None,
                        campaign_id=campaign_id,
                        alert_ids=[],
                        fallback=False,
                    )
                summary.digests += 1 if queued else 0

    async def _prune(self, conn: Connection, at: datetime) -> None:
        if monotonic.monotonic() - self._pruned_at < 3600:
            return
        self._pruned_at = monotonic.monotonic()
        await repository.prune_samples(conn, at - SAMPLE_RETENTION)


# -- helpers (pure) ---------------------------------------------------------------------------


def _details(state: UnitState, p: Progress, rank: dict[str, Any] | None) -> dict[str, Any]:
    """The figures an alert shows, refreshed at every evaluation."""
    out: dict[str, Any] = {
        "unit_name": state.unit_name,
        "level": state.level,
        "parent": state.parent,
        "value": state.value,
        "target": state.target,
        "baseline": state.baseline,
        "pct": _round(p.pct, 1),
        "expected": _round(p.expected, 1),
        "pace": _round(p.pace, 3),
        "required_daily_rate": _round(p.required_daily_rate, 1),
        "run_rate_7d": _round(p.run_rate_7d, 1),
        "projected_completion": _iso(p.projected_completion),
        "status": p.status.value,
        "last_event_at": _iso(state.last_event_at),
    }
    if rank is not None:
        out.update(rank)
    return out


def _silence(row: asyncpg.Record) -> Silence:
    return Silence(
        id=row["id"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
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


def _groups(
    rows: Sequence[asyncpg.Record], silences: Sequence[Silence], at: datetime
) -> dict[int, tuple[str, GroupState, list[Member]]]:
    out: dict[int, tuple[str, GroupState, list[Member]]] = {}
    for r in rows:
        inhibited = inhibited_by(r["rule"], r["firing_rules"]) is not None
        if r["group_id"] not in out:
            state = GroupState(r["seq"], r["anchor_seq"], r["anchor_at"], r["repeat_slot"])
            out[r["group_id"]] = (r["campaign_id"], state, [])
        muted = bool(
            silenced_by(
                silences, r["campaign_id"], r["unit"], r["ancestors"], r["indicator"], r["rule"], at
            )
        )
        out[r["group_id"]][2].append(
            Member(
                r["alert_id"],
                r["level"],
                r["state"],
                r["changed_at"],
                r["notified"],
                muted,
                inhibited,
            )
        )
    return out


def _addresses(
    contact: asyncpg.Record | None, fallback_webhook: str | None, channels: frozenset[str]
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    email = contact["chief_email"] if contact else None
    webhook = (contact["chief_webhook"] if contact else None) or fallback_webhook
    chat = contact["chief_chat"] if contact else None
    for channel, address in (("email", email), ("webhook", webhook), ("chat", chat)):
        if address and channel in channels:
            out.append((channel, address))
    return out


def _recipient(contact: asyncpg.Record | None, code: str) -> dict[str, Any]:
    return {
        "unit": code,
        "name": (contact["name"] if contact else None) or code,
        "chief_name": contact["chief_name"] if contact else None,
    }


async def _campaign(conn: Connection, campaign_id: str) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT id, name, timezone FROM campaigns WHERE id = $1", campaign_id)
    if row is None:
        return {"id": campaign_id, "name": campaign_id, "timezone": "Asia/Ho_Chi_Minh"}
    return {"id": row["id"], "name": row["name"], "timezone": row["timezone"]}


def _indicator_name(indicators: dict[str, asyncpg.Record], code: str, language: str) -> str:
    row = indicators.get(code)
    if row is None:
        return code
    return str((row["name_en"] if language == "en" else None) or row["name"])


def _alert_model(
    row: asyncpg.Record,
    level: int,
    new: bool,
    indicators: dict[str, asyncpg.Record],
    rule_words: dict[str, str],
    language: str,
) -> dict[str, Any]:
    details = row["details"]
    d: dict[str, Any] = json.loads(details) if isinstance(details, str) else dict(details)
    return {
        "alert_id": row["id"],
        "rule": row["rule"],
        "rule_text": rule_words.get(row["rule"], row["rule"]),
        "unit": row["unit"],
        "unit_name": d.get("unit_name") or row["unit"],
        "indicator": row["indicator"],
        "indicator_name": _indicator_name(indicators, row["indicator"], language),
        "state": row["state"],
        "since": _iso(row["since"]),
        "fired_at": _iso(row["fired_at"]),
        "resolved_at": _iso(row["resolved_at"]),
        "escalation_level": level,
        "new": new,
        "value": d.get("value"),
        "target": d.get("target"),
        "pct": d.get("pct"),
        "expected": d.get("expected"),
        "pace": d.get("pace"),
        "required_daily_rate": d.get("required_daily_rate"),
        "run_rate_7d": d.get("run_rate_7d"),
        "projected_completion": d.get("projected_completion"),
        "rank": d.get("rank"),
        "of_units": d.get("of_units"),
    }


def _progress_model(
    s: UnitState,
    p: Progress,
    history_known: bool,
    indicators: dict[str, asyncpg.Record],
    status_words: dict[str, str],
    language: str,
) -> dict[str, Any]:
    # Without a week of history the notifier has no run rate: `at_risk` would only mean
    # "not known yet", so the digest says that instead.
    status = "unknown" if p.status is Status.AT_RISK and not history_known else p.status.value
    return {
        "indicator": s.indicator,
        "indicator_name": _indicator_name(indicators, s.indicator, language),
        "value": s.value,
        "target": s.target,
        "pct": _round(p.pct, 1),
        "expected": _round(p.expected, 1),
        "pace": _round(p.pace, 3),
        "required_daily_rate": _round(p.required_daily_rate, 1),
        "status": status,
        "status_text": status_words.get(status, status),
    }
