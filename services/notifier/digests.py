"""Digests: the scheduled summary per chief, once per slot (the dedup key is the slot),
from the same judged figures as the alerts, listing the alerts the chief's messages list."""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial

import asyncpg

from services.notifier.groups import listed_now
from services.notifier.inputs import Judged, follow_ups_end
from services.notifier.messages import (
    Body,
    Outgoing,
    alert_model,
    campaign_model,
    lagging,
    progress_model,
    recipient_model,
)
from services.notifier.policy import Policy
from services.notifier.render import Renderer
from services.notifier.repository import alerts as alert_sql
from services.notifier.repository import deliveries as delivery_sql
from services.notifier.repository import reference as reference_sql
from services.notifier.repository.reference import IndicatorName
from services.notifier.rules import Member, digest_slot
from tiendo.board.campaign import Campaign
from tiendo.database import Connection


def _digest(
    language: str,
    *,
    renderer: Renderer,
    base: Body,
    judged: Sequence[Judged],
    indicators: dict[str, IndicatorName],
    firing: Sequence[Member],
    rows: Mapping[int, asyncpg.Record],
) -> Body:
    """A chief's digest in `language`: each contact reads its own (messages.Outgoing)."""
    rule_words, status_words = renderer.words(language)
    listed = [
        alert_model(rows[m.alert_id], m.level, False, indicators, rule_words, language)
        for m in firing
        if m.alert_id in rows
    ]
    body: Body = {
        **base,
        "indicators": [
            progress_model(j.verdict, indicators, status_words, language) for j in judged
        ],
        # what the chief's alert messages list now (`groups.listed_now`), and how many
        "firing": listed,
        "firing_count": len(listed),
        "language": language,
    }
    text = renderer.digest(language, body)
    return {**body, "subject": text.subject, "text": text.text, "chat": text.chat}


def deferred_grace(grace: timedelta, at: datetime, deferred_since: datetime | None) -> timedelta:
    """How late the slot a full pass at `at` sends of a campaign may be. `deferred_since`:
    the first pass that waited for a rebuild since the campaign's digests last got
    through a pass (`Evaluator._held_back`: a pass whose follow-up of the campaign raised,
    or that left it out, did not send them); a slot still due then (at most `grace` old)
    was held back by the rebuild, not missed, and is due now however late: the chiefs get
    it once the figures are whole again, with those figures (docs/alerts.md "While the
    counters are rebuilt")."""
    if deferred_since is None:
        return grace
    # the latest slot not older than `grace` at `deferred_since`, or one that came since
    return max(grace, at - deferred_since + grace)


async def queue_digests(
    conn: Connection,
    judged: Sequence[Judged],
    campaigns: dict[str, Campaign],
    policies: dict[str, Policy],
    at: datetime,
    grace: timedelta,
    renderer: Renderer,
    outgoing: Outgoing,
) -> None:
    by_campaign: dict[str, list[Judged]] = defaultdict(list)
    for j in judged:
        by_campaign[j.verdict.campaign_id].append(j)
    for campaign_id, members in by_campaign.items():
        campaign, policy = campaigns[campaign_id], policies[campaign_id]
        slot = digest_slot(at, campaign.timezone, policy.digest_clock(), grace)
        # up to the end of the local day after the deadline (`inputs.follow_ups_end`, the
        # rule that keeps the campaign judged that long)
        if slot is None or slot < campaign.starts_at or slot >= follow_ups_end(campaign):
            continue
        stamp = slot.strftime("%Y%m%dT%H%M%z")
        prefix = f"digest/{campaign_id}/{stamp}/"
        done = {
            key[len(prefix) :].split("/")[0] for key in await delivery_sql.dedup_keys(conn, prefix)
        }
        units = sorted({j.verdict.unit for j in members})
        recipients = {
            code: r
            for code, r in (await reference_sql.recipients(conn, units)).items()
            if outgoing.reaches(r)
        }
        pending = [u for u in recipients if u not in done]
        if not pending:
            continue
        indicators = await reference_sql.indicator_names(conn)
        campaign_body = await campaign_model(conn, campaign_id)
        own: dict[str, list[Judged]] = defaultdict(list)
        children: dict[str, set[str]] = defaultdict(set)
        names = {j.verdict.unit: j.verdict.unit_name for j in members}
        for j in members:
            own[j.verdict.unit].append(j)
            if j.verdict.parent and lagging(j.progress):
                children[j.verdict.parent].add(j.verdict.unit)
        # the alerts each chief's messages list, by the planner's own selection
        firing = await listed_now(conn, campaign_id, pending, at)
        rows = {
            r["id"]: r
            for r in await alert_sql.alerts_by_id(
                conn, sorted({m.alert_id for listed in firing.values() for m in listed})
            )
        }
        for code in pending:
            message_id = f"{prefix}{code}"
            same_in_every_language: Body = {
                "kind": "digest",
                "message_id": message_id,
                "campaign": campaign_body,
                "recipient": recipient_model(recipients[code], code),
                "slot": slot.isoformat(),
                "children_behind": sorted(names.get(c, c) for c in children.get(code, ())),
                "now": at.isoformat(),
            }
            render = partial(
                _digest,
                renderer=renderer,
                base=same_in_every_language,
                judged=own[code],
                indicators=indicators,
                firing=firing.get(code, []),
                rows=rows,
            )
            async with conn.transaction():
                await outgoing.enqueue(
                    conn,
                    kind="digest",
                    message_id=message_id,
                    recipient=recipients[code],
                    recipient_code=code,
                    render=render,
                    language=policy.language,
                    group_id=None,
                    campaign_id=campaign_id,
                    alert_ids=[],
                    fallback=False,
                )
