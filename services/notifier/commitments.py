"""Commitments checked when due: at each full pass, every version of an explanation whose
committed date or rate came due while it was the latest (`explanations.came_due`) is judged
at that moment from history, stored once (`commitment_checks`), and its chief is told
whether it was met. The briefing pack shows the same checks as "last week's
commitments"."""

import functools
from collections.abc import Mapping
from datetime import datetime

from services.notifier.briefing.formats import commitment_text
from services.notifier.briefing.words import local, number
from services.notifier.explanations import Commitment, came_due, check_commitment
from services.notifier.messages import Body, Outgoing, campaign_model, recipient_model
from services.notifier.policy import Policy
from services.notifier.render import Rendered
from services.notifier.repository import explanations as sql
from services.notifier.repository import reference as reference_sql
from services.notifier.repository.reference import IndicatorName
from services.notifier.summary import Summary
from tiendo.board.campaign import Campaign
from tiendo.board.figures import judge
from tiendo.database import Connection

KIND = "commitment"


def commitment_message(
    language: str,
    unit_name: str,
    indicator_name: str,
    promise: str,
    due: str,
    met: bool,
    value: str,
    target: str,
) -> Rendered:
    """Subject, text and chat line of a checked commitment."""
    if language == "en":
        verdict = "met" if met else "not met"
        subject = f"Commitment {verdict}: {unit_name} — {indicator_name}"
        text = (
            f"The commitment of {unit_name} on {indicator_name} ({promise}), due {due}, "
            f"was {verdict}: {value} of {target}.\n"
        )
    else:
        verdict = "ĐẠT" if met else "KHÔNG ĐẠT"
        subject = f"Cam kết {verdict}: {unit_name} — {indicator_name}"
        text = (
            f"Cam kết của {unit_name} về {indicator_name} ({promise}), hạn {due}: "
            f"{verdict} — đã đạt {value}/{target}.\n"
        )
    return Rendered(subject, text, text)


async def check_commitments(
    conn: Connection,
    campaigns: dict[str, Campaign],
    policies: dict[str, Policy],
    at: datetime,
    outgoing: Outgoing,
    summary: Summary,
) -> None:
    """Check every commitment due by `at` once, and tell its unit's chief."""
    names = await reference_sql.indicator_names(conn)
    for campaign in campaigns.values():
        for e in await sql.open_commitments(conn, campaign.id):
            due = came_due(
                e.commitment, e.submitted_at, e.superseded_at, campaign.timezone, campaign.deadline
            )
            if due is None or due > at:
                continue
            verdict = (await judge(conn, campaign, e.indicator, [e.unit], due, live=False)).get(
                e.unit
            )
            if verdict is None:
                continue
            p = verdict.progress
            checked = check_commitment(
                e.commitment,
                value_then=e.value_then,
                submitted_at=e.submitted_at,
                value_now=p.value,
                pace_now=p.pace,
                threshold=campaign.thresholds.behind,
                at=due,
            )
            async with conn.transaction():
                if not await sql.record_check(
                    conn, e.id, due, at, checked.met, checked.value, checked.wanted
                ):
                    continue  # another replica checked it
                recipient = await reference_sql.unit(conn, e.unit)
                message_id = f"{KIND}/{campaign.id}/{e.id}"
                same_in_every_language: Body = {
                    "kind": KIND,
                    "message_id": message_id,
                    "campaign": await campaign_model(conn, campaign.id),
                    "recipient": recipient_model(recipient, e.unit),
                    "commitment": {
                        "unit": e.unit,
                        "indicator": e.indicator,
                        "version": e.version,
                        "committed_date": e.commitment.by.isoformat() if e.commitment.by else None,
                        "committed_rate": e.commitment.rate,
                        "due_at": due.isoformat(),
                        "met": checked.met,
                        "value": p.value,
                        "target": p.target,
                    },
                    "now": at.isoformat(),
                }
                # Each contact reads it in its own language, like every other message
                # (docs/alerts.md, *Language*); the policy's is for contacts without one.
                render = functools.partial(
                    _commitment,
                    base=same_in_every_language,
                    commitment=e.commitment,
                    unit_name=verdict.unit_name,
                    indicator=e.indicator,
                    names=names,
                    due=local(due, campaign.timezone),
                    met=checked.met,
                    value=p.value,
                    target=p.target,
                )
                await outgoing.enqueue(
                    conn,
                    kind=KIND,
                    message_id=message_id,
                    recipient=recipient,
                    recipient_code=e.unit,
                    render=render,
                    language=policies[campaign.id].language,
                    group_id=None,
                    campaign_id=campaign.id,
                    alert_ids=[],
                    fallback=True,
                )
                summary.messages.append((message_id, e.unit, KIND))


def _commitment(
    language: str,
    *,
    base: Body,
    commitment: Commitment,
    unit_name: str,
    indicator: str,
    names: Mapping[str, IndicatorName],
    due: str,
    met: bool,
    value: int | None,
    target: int | None,
) -> Body:
    """The message's body in `language`: its texts, and the indicator's name, in it."""
    found = names.get(indicator)
    name = (found.in_language(language) if found is not None else "") or indicator
    text = commitment_message(
        language,
        unit_name,
        name,
        commitment_text(commitment, language),
        due,
        met,
        number(language, value),
        number(language, target),
    )
    return {
        **base,
        "subject": text.subject,
        "text": text.text,
        "chat": text.chat,
        "language": language,
    }
