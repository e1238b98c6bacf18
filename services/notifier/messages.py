"""What a message says and where it goes: the models the templates render (an alert, a
unit's figures, the recipient), and one notification row per channel of the recipient."""

import json
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.notifier.metrics import NotifierMetrics
from services.notifier.repository import deliveries as delivery_sql
from services.notifier.repository import reference as reference_sql
from services.notifier.repository.reference import Contact, IndicatorName, Recipient
from tiendo.board.figures import Verdict
from tiendo.database import Connection
from tiendo.logs import get_logger
from tiendo.pace import Progress, Status

log = get_logger(__name__)
# A message's body (what the templates render and the webhook carries) in one language.
Body = dict[str, Any]


def _round(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None


def rate_figure(value: float | None) -> float | None:
    """A rate per day as a message carries it (webhook body, alert details): one decimal,
    what the texts show below 10 a day; but a positive rate is never carried as 0, or its
    text would read 0: under 0.05 it keeps its first significant digit (0.03)."""
    if value is None:
        return None
    rounded = round(value, 1)
    if rounded == 0 and value != 0:
        return float(f"{value:.1g}")
    return rounded


def iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def details(v: Verdict, rank: dict[str, Any] | None) -> dict[str, Any]:
    """The figures an alert shows, refreshed at every evaluation."""
    p = v.progress
    out: dict[str, Any] = {
        "unit_name": v.unit_name,
        "level": v.level,
        "parent": v.parent,
        "value": p.value,
        "target": p.target,
        "baseline": p.baseline,
        "pct": _round(p.pct, 1),
        "expected": _round(p.expected, 1),
        "pace": _round(p.pace, 3),
        "required_daily_rate": rate_figure(p.required_daily_rate),
        "run_rate_7d": rate_figure(p.run_rate_7d),
        # to the minute: a projection moves with the clock at every pass, and an alert's
        # figures are rewritten only when what a chief would read changed
        "projected_completion": iso(
            p.projected_completion.replace(second=0, microsecond=0)
            if p.projected_completion is not None
            else None
        ),
        "status": p.status.value,
        "last_event_at": iso(v.last_event_at),
        "deadline": v.deadline.isoformat(),
    }
    if rank is not None:
        out.update(rank)
    return out


# Channels in the order their rows are queued (the order before contacts became rows);
# any other channel follows, by name.
_FIRST_CHANNELS = ("email", "webhook", "chat")


def _channel_order(channel: str) -> tuple[int, str]:
    first = _FIRST_CHANNELS.index(channel) if channel in _FIRST_CHANNELS else len(_FIRST_CHANNELS)
    return first, channel


def addresses(
    recipient: Recipient | None, fallback_webhook: str | None, channels: Collection[str]
) -> list[Contact]:
    """Every contact the recipient can be reached on, in queueing order; the fallback
    webhook (the operators', in the policy's language) stands in for a recipient without a
    webhook of their own (`stands_in` tells it apart)."""
    found = {c.channel: c for c in recipient.contacts} if recipient else {}
    if fallback_webhook and "webhook" not in found:
        found["webhook"] = stand_in(fallback_webhook)
    return [found[channel] for channel in sorted(found, key=_channel_order) if channel in channels]


def stand_in(fallback_webhook: str) -> Contact:
    """The operators' fallback webhook as a contact: no language of its own (the policy's)."""
    return Contact("webhook", fallback_webhook, None)


def stands_in(recipient: Recipient | None, contact: Contact) -> bool:
    """Whether `contact` (of `addresses`) is the fallback webhook, not the recipient's own."""
    own = {c.channel for c in recipient.contacts} if recipient else set()
    return contact.channel not in own


def recipient_model(recipient: Recipient | None, code: str) -> dict[str, Any]:
    return {
        "unit": code,
        "name": (recipient.name if recipient else None) or code,
        "chief_name": recipient.chief_name if recipient else None,
    }


async def campaign_model(conn: Connection, campaign_id: str) -> dict[str, Any]:
    found = (await reference_sql.campaign_names(conn)).get(campaign_id)
    if found is None:
        return {"id": campaign_id, "name": campaign_id, "timezone": "Asia/Ho_Chi_Minh"}
    return {"id": found.id, "name": found.name, "timezone": found.timezone}


def indicator_name(indicators: dict[str, IndicatorName], code: str, language: str) -> str:
    found = indicators.get(code)
    return found.in_language(language) if found is not None else code


def alert_model(
    row: asyncpg.Record,
    level: int,
    new: bool,
    indicators: dict[str, IndicatorName],
    rule_words: dict[str, str],
    language: str,
) -> dict[str, Any]:
    raw = row["details"]
    d: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else dict(raw)
    value: int | None = d.get("value")
    target: int | None = d.get("target")
    ended = bool(d.get("campaign_ended"))
    # its key's deadline passed (the campaign's, or the unit's own before it): the final
    # word on the alert, not "back on track" (stored before this was kept: the campaign's)
    over = ended or bool(d.get("deadline_passed"))
    shortfall = max(0, target - value) if value is not None and target is not None else None
    return {
        "alert_id": row["id"],
        "rule": row["rule"],
        "rule_text": rule_words.get(row["rule"], row["rule"]),
        "unit": row["unit"],
        "unit_name": d.get("unit_name") or row["unit"],
        "indicator": row["indicator"],
        "indicator_name": indicator_name(indicators, row["indicator"], language),
        "state": row["state"],
        "since": iso(row["since"]),
        "fired_at": iso(row["fired_at"]),
        "resolved_at": iso(row["resolved_at"]),
        "escalation_level": level,
        "new": new,
        "value": value,
        "target": target,
        "pct": d.get("pct"),
        "expected": d.get("expected"),
        "pace": d.get("pace"),
        "required_daily_rate": d.get("required_daily_rate"),
        "run_rate_7d": d.get("run_rate_7d"),
        "projected_completion": d.get("projected_completion"),
        "rank": d.get("rank"),
        "of_units": d.get("of_units"),
        # the final word past the deadline: reached its target, or by how much not
        "campaign_ended": ended,
        "deadline_passed": over,
        "achieved": over and shortfall == 0,
        "shortfall": shortfall if over else None,
        # closed because its key is no longer judged, not because it cleared (the
        # evaluator's `closed_because`): `untracked` (its target went) or `replaced` (a
        # cut-over replaced the unit by `successors` at `replaced_at`); None otherwise.
        # The final word past a deadline comes first.
        "closed_because": None if over else d.get("closed_because"),
        "replaced_at": d.get("replaced_at"),
        "successors": list(d.get("successors") or []),
    }


def progress_model(
    v: Verdict,
    indicators: dict[str, IndicatorName],
    status_words: dict[str, str],
    language: str,
) -> dict[str, Any]:
    p = v.progress
    status = p.status.value
    return {
        "indicator": v.indicator,
        "indicator_name": indicator_name(indicators, v.indicator, language),
        "value": p.value,
        "target": p.target,
        "pct": _round(p.pct, 1),
        "expected": _round(p.expected, 1),
        "pace": _round(p.pace, 3),
        "required_daily_rate": rate_figure(p.required_daily_rate),
        "status": status,
        "status_text": status_words.get(status, status),
    }


def lagging(p: Progress) -> bool:
    return p.status in (Status.BEHIND, Status.STALE)


class Outgoing:
    """Queues one notification row per channel a recipient can be reached on."""

    def __init__(
        self, channels: Collection[str], fallback_webhook: str | None, metrics: NotifierMetrics
    ) -> None:
        self._channels = frozenset(channels)
        self._fallback = fallback_webhook
        self._metrics = metrics

    def _nowhere(self, recipient_code: str, kind: str, fallback: bool) -> str:
        """Why a message to `recipient_code` reached nobody, as its failed row says."""
        channels = ", ".join(sorted(self._channels)) or "none"
        stand_in = (
            ", and no fallback webhook (TIENDO_NOTIFIER_WEBHOOK_URL) stands in" if fallback else ""
        )
        return (
            f"{recipient_code} has no contact on a channel the notifier sends on "
            f"({channels}){stand_in}: the {kind} message reached nobody"
        )

    def reaches(self, recipient: Recipient | None, *, fallback: bool = False) -> bool:
        """Whether the recipient has an address of their own on a channel sent on (or,
        with `fallback`, whether the operators' fallback webhook stands in for them)."""
        return bool(addresses(recipient, self._fallback if fallback else None, self._channels))

    async def unreached(
        self,
        conn: Connection,
        *,
        kind: str,
        message_id: str,
        recipient_code: str,
        campaign_id: str,
        alert_ids: Sequence[int],
        error: str,
        body: Body,
        language: str,
        group_id: int | None = None,
    ) -> bool:
        """A message with nowhere to go, recorded in the delivery log as failed (channel
        `none`, `last_error` why) and counted as `no_address`: a message is never dropped
        with only a log line (contract §6). Keyed by the message, as its rows would be: a
        message decided again records nothing more. False when it was recorded already."""
        created = await delivery_sql.insert_undeliverable(
            conn,
            dedup_key=f"{message_id}/none",
            kind=kind,
            recipient=recipient_code,
            body={**body, "delivery_id": f"{message_id}/none"},
            group_id=group_id,
            campaign_id=campaign_id,
            subject=str(body.get("subject", "")),
            language=language,
            error=error,
            alert_ids=alert_ids,
        )
        if created is None:
            return False
        self._metrics.notifications.labels("none", "no_address").inc()
        log.warning(
            "no_recipient_address", recipient=recipient_code, message_id=message_id, kind=kind
        )
        return True

    async def enqueue(
        self,
        conn: Connection,
        *,
        kind: str,
        message_id: str,
        recipient: Recipient | None,
        recipient_code: str,
        render: Callable[[str], Body],
        language: str,
        group_id: int | None,
        campaign_id: str,
        alert_ids: Sequence[int],
        fallback: bool,
        render_shared: Callable[[str], Body] | None = None,
    ) -> int:
        """One notification row per channel, its body `render`ed in the contact's language
        (`language`, the policy's, for a contact without one); returns how many were newly
        queued. Each language is rendered once. With `fallback` the operators' fallback
        webhook stands in for a recipient without a webhook; its copy is `render_shared`
        (default `render`): what is the chief's alone, the personal link, stays out of it
        (docs/briefing.md, "The chief's link")."""
        found = addresses(recipient, self._fallback if fallback else None, self._channels)
        if not found:
            # the message as the operators' copy would carry it: never the chief's link
            await self.unreached(
                conn,
                kind=kind,
                message_id=message_id,
                recipient_code=recipient_code,
                campaign_id=campaign_id,
                alert_ids=alert_ids,
                error=self._nowhere(recipient_code, kind, fallback),
                body=(render_shared or render)(language),
                language=language,
                group_id=group_id,
            )
            return 0
        queued = 0
        bodies: dict[tuple[str, bool], Body] = {}
        for contact in found:
            channel, address = contact.channel, contact.address
            read_in = contact.language or language
            shared = stands_in(recipient, contact)
            made = render_shared if shared and render_shared is not None else render
            body = bodies.get((read_in, shared)) or made(read_in)
            bodies[read_in, shared] = body
            delivery_id = f"{message_id}/{channel}"
            created = await delivery_sql.insert_notification(
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
                language=read_in,
                alert_ids=alert_ids,
                fallback=shared,
            )
            if created is not None:
                queued += 1
                self._metrics.queued.labels(kind, channel).inc()
        return queued
