"""What an escalated alert's parent chief is told of the unit's own response: whether its
chief acknowledged, what they explained, and the commitment, quoted."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.notifier.briefing.formats import commitment_text
from services.notifier.explanations import ExplanationPolicy
from services.notifier.repository import explanations as sql
from services.notifier.repository.explanations import Explanation
from tiendo.database import Connection

QUOTE_AT_MOST = 300  # characters of the chief's text quoted in a message


def response_text(
    acknowledged: bool, said: Explanation | None, policy: ExplanationPolicy, language: str
) -> str:
    """One sentence for the parent chief, in the message's language."""
    vi = language != "en"
    if said is None:
        if acknowledged:
            return (
                "Đơn vị đã nhận cảnh báo, chưa giải trình."
                if vi
                else ("The unit acknowledged, and has not explained.")
            )
        return (
            "Đơn vị chưa nhận cảnh báo và chưa giải trình."
            if vi
            else ("The unit has neither acknowledged nor explained.")
        )
    cause = policy.cause(said.cause)
    label = cause.label(language) if cause else said.cause
    detail = said.detail if len(said.detail) <= QUOTE_AT_MOST else said.detail[:QUOTE_AT_MOST] + "…"
    quoted = f" “{detail}”" if detail else ""
    promise = commitment_text(said.commitment, "en" if not vi else "vi")
    if vi:
        return f"Đơn vị đã giải trình: {label}{quoted}; cam kết: {promise}."
    return f"The unit explained: {label}{quoted}; commitment: {promise}."


async def note_responses(
    conn: Connection,
    campaign_id: str,
    alerts: Sequence[dict[str, Any]],
    language: str,
    at: datetime,
) -> None:
    """Add `response` to each escalated alert model (level above 0) of a message: what
    the unit's own chief did, through the links of its own messages. The parent reading it
    may have acknowledged the alert itself; that is not the unit's response."""
    escalated = [a for a in alerts if a.get("escalation_level")]
    if not escalated:
        return
    policy = await sql.policy(conn, campaign_id)
    acked = await sql.acknowledged_by_unit(conn, [a["alert_id"] for a in escalated])
    said = await sql.latest_explanations(conn, campaign_id, at, [a["unit"] for a in escalated])
    for a in escalated:
        a["response"] = response_text(
            a["alert_id"] in acked, said.get((a["unit"], a["indicator"])), policy, language
        )


async def repeat_quieted(
    conn: Connection,
    alert_ids: Sequence[int],
    since: datetime | None,
    at: datetime,
    recipient: str,
) -> bool:
    """Whether a repeat to `recipient` of these firing alerts is held back: each one
    acknowledged since the last change message (`since`), or snoozed at `at`, by that
    recipient (through a link of its own messages: a ward's chief who acknowledges does
    not quiet its parent's reminders of the escalated alert). A change message is never
    held back, and escalation goes on regardless (docs/briefing.md)."""
    if not alert_ids:
        return False
    acked = await sql.acknowledged(conn, alert_ids, recipient)
    snoozed = await sql.snoozed(conn, alert_ids, at, recipient)
    return all(
        i in snoozed or (i in acked and (since is None or acked[i] >= since)) for i in alert_ids
    )
