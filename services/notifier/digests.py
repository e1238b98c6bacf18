"""Digests: the scheduled summary per chief, once per slot (the dedup key is the slot),
from the same judged figures as the alerts."""

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

import asyncpg

from services.notifier.inputs import Judged
from services.notifier.messages import (
    Body,
    Outgoing,
    campaign_model,
    lagging,
    progress_model,
    recipient_model,
)
from services.notifier.policy import Policy
from services.notifier.render import Renderer
from services.notifier.repository import deliveries as delivery_sql
from services.notifier.repository import reference as reference_sql
from services.notifier.repository.alerts import AlertKey
from services.notifier.repository.reference import IndicatorName
from services.notifier.rules import digest_slot
from tiendo.board.campaign import Campaign
from tiendo.database import Connection


def _digest(
    language: str,
    *,
    renderer: Renderer,
    base: Body,
    judged: Sequence[Judged],
    indicators: dict[str, IndicatorName],
) -> Body:
    """A chief's digest in `language`: each contact reads its own (messages.Outgoing)."""
    _, status_words = renderer.words(language)
    body: Body = {
        **base,
        "indicators": [
            progress_model(j.verdict, indicators, status_words, language) for j in judged
        ],
        "language": language,
    }
    text = renderer.digest(language, body)
    return {**body, "subject": text.subject, "text": text.text, "chat": text.chat}


async def queue_digests(
    conn: Connection,
    judged: Sequence[Judged],
    campaigns: dict[str, Campaign],
    policies: dict[str, Policy],
    open_: dict[AlertKey, asyncpg.Record],
    at: datetime,
    grace: timedelta,
    renderer: Renderer,
    outgoing: Outgoing,
) -> None:
    firing: Counter[tuple[str, str]] = Counter(
        (k.key.campaign_id, k.key.unit) for k, a in open_.items() if a["state"] == "firing"
    )
    by_campaign: dict[str, list[Judged]] = defaultdict(list)
    for j in judged:
        by_campaign[j.verdict.campaign_id].append(j)
    for campaign_id, members in by_campaign.items():
        campaign, policy = campaigns[campaign_id], policies[campaign_id]
        slot = digest_slot(at, campaign.timezone, policy.digest_clock(), grace)
        if (
            slot is None
            or slot < campaign.starts_at
            or slot > campaign.deadline + timedelta(days=1)
        ):
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
        for code in pending:
            message_id = f"{prefix}{code}"
            same_in_every_language: Body = {
                "kind": "digest",
                "message_id": message_id,
                "campaign": campaign_body,
                "recipient": recipient_model(recipients[code], code),
                "slot": slot.isoformat(),
                "children_behind": sorted(names.get(c, c) for c in children.get(code, ())),
                "firing_count": firing[(campaign_id, code)],
                "now": at.isoformat(),
            }
            render = partial(
                _digest,
                renderer=renderer,
                base=same_in_every_language,
                judged=own[code],
                indicators=indicators,
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
