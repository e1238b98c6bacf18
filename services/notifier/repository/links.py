"""Withdrawn links (migration 012): revoked when an address a link's message was sent to is
no longer its unit's contact, or by an administrator; audited as every admin change is.

The rule "sent to an address no longer the unit's" is the database's own function
(`notifier.link_reached_former_contact`), so the contact change that revokes, the units
import (`notifier.hand_over_unit_contacts`) and the page that refuses read it alike.

A withdrawal ends the snoozes made through the link, in its transaction, audited as
`snoozes.end`: the trigger on `revoked_at` (migration 013), so every statement here that
writes it, and the units import's, ends them alike."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from tiendo import audit
from tiendo.database import Connection


class Because(StrEnum):
    """Why a link was withdrawn (`links.revoked_because`)."""

    CONTACT_CHANGED = "contact_changed"
    ADMIN = "admin"


# Who revoked a link the page found sent to a former contact before any contact change
# did (an attempt that read the old address just before the change, and wrote it down
# just after): no administrator acted then.
FOUND_BY_THE_PAGE = "notifier"


@dataclass(frozen=True, slots=True)
class Revoked:
    """A link just revoked, as the audit and the admin API name it."""

    id: str
    campaign_id: str
    recipient: str
    message_key: str
    issued_at: datetime
    expires_at: datetime

    @classmethod
    def from_row(cls, r: asyncpg.Record) -> "Revoked":
        return cls(
            r["id"],
            r["campaign_id"],
            r["recipient"],
            r["message_key"],
            r["issued_at"],
            r["expires_at"],
        )


REVOKE_TO_FORMER_CONTACTS = """
SELECT id, campaign_id, recipient, message_key, issued_at, expires_at
FROM notifier.revoke_links_to_former_contacts($1::text[], $2, $3)
ORDER BY recipient, issued_at, id
"""


# All live links of a unit (of one campaign, when `$2` is given).
REVOKE_BY_ADMIN = """
UPDATE links
SET revoked_at = $3, revoked_because = 'admin', revoked_by = $4, revoked_note = $5
WHERE recipient = $1 AND ($2::text IS NULL OR campaign_id = $2)
  AND revoked_at IS NULL AND expires_at > $3
RETURNING id, campaign_id, recipient, message_key, issued_at, expires_at
"""


# Why the link was withdrawn: as recorded, else `contact_changed` when its message reached
# an address no longer the unit's (not recorded yet); null while it holds.
_WITHDRAWN = """
SELECT coalesce(revoked_because,
                CASE WHEN notifier.link_reached_former_contact(recipient, message_key)
                     THEN 'contact_changed' END) AS because,
       revoked_at IS NOT NULL AS recorded
FROM links WHERE id = $1
"""
SELECT_WITHDRAWN = _WITHDRAWN
# In the transaction that stores what a link's form asked: a revocation that commits
# meanwhile waits for it, or is seen by it (never an acknowledgement after the revocation).
SELECT_WITHDRAWN_LOCKED = _WITHDRAWN + "FOR SHARE\n"


RECORD_FOUND = """
UPDATE links SET revoked_at = $2, revoked_because = 'contact_changed', revoked_by = $3
WHERE id = $1 AND revoked_at IS NULL
"""


async def revoke_to_former_contacts(
    conn: Connection, units: Sequence[str], at: datetime, actor: str
) -> list[Revoked]:
    """Revoke, as of `at`, the live links of `units` whose message reached an address that
    is no longer the unit's contact on its channel, and audit them per unit (`actor`: who
    changed the contacts); the links revoked. Called in the contact change's transaction."""
    rows = await conn.fetch(REVOKE_TO_FORMER_CONTACTS, list(units), at, actor)
    revoked = [Revoked.from_row(r) for r in rows]
    for unit in dict.fromkeys(r.recipient for r in revoked):
        await _audit(
            conn, actor, unit, Because.CONTACT_CHANGED, [r for r in revoked if r.recipient == unit]
        )
    return revoked


async def revoke_by_admin(
    conn: Connection, unit: str, campaign_id: str | None, at: datetime, actor: str, note: str
) -> list[Revoked]:
    """Revoke, as of `at`, every live link of `unit` (of `campaign_id` only, when given),
    audited when any was; the links revoked."""
    rows = await conn.fetch(REVOKE_BY_ADMIN, unit, campaign_id, at, actor, note)
    revoked = sorted((Revoked.from_row(r) for r in rows), key=lambda r: (r.issued_at, r.id))
    if revoked:
        await _audit(conn, actor, unit, Because.ADMIN, revoked, campaign=campaign_id, note=note)
    return revoked


async def withdrawn(
    conn: Connection, link_id: str, at: datetime, *, locked: bool = False
) -> Because | None:
    """Why the link no longer works, None while it does. A link found sent to a former
    contact that no contact change revoked is recorded as revoked now, by the page
    (`FOUND_BY_THE_PAGE`), unless `locked` (the caller's transaction is rolled back on a
    refusal: the next open records it). `locked`: the row is held until the caller's
    transaction ends (`SELECT_WITHDRAWN_LOCKED`)."""
    row = await conn.fetchrow(SELECT_WITHDRAWN_LOCKED if locked else SELECT_WITHDRAWN, link_id)
    if row is None or row["because"] is None:
        return None
    because = Because(row["because"])
    if not row["recorded"] and not locked:
        await conn.execute(RECORD_FOUND, link_id, at, FOUND_BY_THE_PAGE)
    return because


async def _audit(
    conn: Connection,
    actor: str,
    unit: str,
    because: Because,
    revoked: Sequence[Revoked],
    **extra: object,
) -> None:
    await audit.record(
        conn,
        actor=actor,
        action="links.revoke",
        subject=unit,
        details={
            "because": because.value,
            "revoked": len(revoked),
            "messages": [r.message_key for r in revoked],
            **extra,
        },
    )
