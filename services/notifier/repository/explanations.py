"""Links, acknowledgements, snoozes, explanations (versioned) and commitment checks."""

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from services.notifier.explanations import (
    Cause,
    Commitment,
    ExplanationIn,
    ExplanationPolicy,
)
from tiendo.database import Connection

SELECT_POLICY = "SELECT * FROM explanation_policies WHERE campaign_id = $1"
UPSERT_POLICY = """
INSERT INTO explanation_policies (campaign_id, causes, snooze_max_seconds, link_ttl_seconds)
VALUES ($1, $2, $3, $4)
ON CONFLICT (campaign_id) DO UPDATE
SET causes = EXCLUDED.causes, snooze_max_seconds = EXCLUDED.snooze_max_seconds,
    link_ttl_seconds = EXCLUDED.link_ttl_seconds, updated_at = now()
"""
INSERT_LINK = """
INSERT INTO links (id, campaign_id, recipient, alert_ids, message_key, issued_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
SELECT_LINK = "SELECT * FROM links WHERE id = $1"
INSERT_NONCE = "INSERT INTO link_actions (nonce, link_id, issued_at) VALUES ($1, $2, $3)"
# Taken once: the row lock makes two submissions of one form race to a single winner.
TAKE_NONCE = """
UPDATE link_actions SET used_at = $3, action = $4
WHERE nonce = $1 AND link_id = $2 AND used_at IS NULL
RETURNING nonce
"""
INSERT_ACKS = """
INSERT INTO acknowledgements (alert_id, link_id, acknowledged_at, remote)
SELECT a, $2, $3, $4 FROM unnest($1::bigint[]) AS a
"""
# (`$2`, when given: only what was done through a link of that recipient's messages)
BY_RECIPIENT = "EXISTS (SELECT 1 FROM links l WHERE l.id = link_id AND l.recipient = {})"
SELECT_ACKS = f"""
SELECT DISTINCT ON (alert_id) alert_id, acknowledged_at FROM acknowledgements
WHERE alert_id = ANY ($1::bigint[]) AND ($2::text IS NULL OR {BY_RECIPIENT.format("$2")})
ORDER BY alert_id, acknowledged_at DESC
"""
# What the unit itself did: an acknowledgement (of `k`) of its alert (`a`) through a link
# of its own chief's messages. A parent told of the alert by escalation acknowledges it
# for its own reminders; that is not the unit acknowledging (docs/briefing.md).
BY_OWN_UNIT = "EXISTS (SELECT 1 FROM links l WHERE l.id = k.link_id AND l.recipient = a.unit)"
SELECT_OWN_ACKS = f"""
SELECT DISTINCT ON (k.alert_id) k.alert_id, k.acknowledged_at
FROM acknowledgements k JOIN alerts a ON a.id = k.alert_id
WHERE k.alert_id = ANY ($1::bigint[]) AND {BY_OWN_UNIT}
ORDER BY k.alert_id, k.acknowledged_at DESC
"""
INSERT_SNOOZES = """
INSERT INTO snoozes (alert_id, link_id, starts_at, ends_at, remote)
SELECT a, $2, $3, $4, $5 FROM unnest($1::bigint[]) AS a
"""
SELECT_SNOOZES = f"""
SELECT alert_id, max(ends_at) AS ends_at FROM snoozes
WHERE alert_id = ANY ($1::bigint[]) AND starts_at <= $2 AND ends_at > $2
  AND ($3::text IS NULL OR {BY_RECIPIENT.format("$3")})
GROUP BY alert_id
"""
# Versions of one (campaign, unit, indicator) are numbered under a transaction lock, so two
# amendments at once get 2 and 3, never both 2.
LOCK_VERSIONS = "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2 || '/' || $3, 14))"
INSERT_EXPLANATION = """
INSERT INTO explanations (campaign_id, unit, indicator, version, cause, detail, committed_date,
                          committed_rate, value_then, link_id, submitted_at, remote)
SELECT $1, $2, $3, coalesce(max(version), 0) + 1, $4, $5, $6, $7, $8, $9, $10, $11
FROM explanations WHERE campaign_id = $1 AND unit = $2 AND indicator = $3
RETURNING *
"""
SELECT_LATEST = """
SELECT DISTINCT ON (unit, indicator) * FROM explanations
WHERE campaign_id = $1 AND submitted_at <= $2 AND ($3::text[] IS NULL OR unit = ANY ($3))
ORDER BY unit, indicator, version DESC
"""
SELECT_VERSIONS = """
SELECT * FROM explanations WHERE campaign_id = $1 AND unit = $2 AND indicator = $3
ORDER BY version
"""
# Every version of a campaign's explanations, with when the next version was written
# (`superseded_at`; null: the latest): what `explanations.came_due` needs to tell whether
# its commitment came due.
_VERSIONS = """(
    SELECT *, lead(submitted_at) OVER (
        PARTITION BY campaign_id, unit, indicator ORDER BY version
    ) AS superseded_at
    FROM explanations WHERE campaign_id = $1
) e"""
# The versions written by $2 (a version written after it still ends the one before: its
# `superseded_at` is read from every version) and the stored check of each.
SELECT_COMMITMENTS = f"""
SELECT e.*, k.due_at AS checked_due_at, k.checked_at, k.met, k.value AS checked_value, k.wanted
FROM {_VERSIONS}
LEFT JOIN commitment_checks k ON k.explanation_id = e.id
WHERE e.submitted_at <= $2
ORDER BY e.unit, e.indicator, e.version
"""
INSERT_CHECK = """
INSERT INTO commitment_checks (explanation_id, due_at, checked_at, met, value, wanted)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING explanation_id
"""
# Every version whose commitment has not been checked yet.
SELECT_OPEN_COMMITMENTS = f"""
SELECT e.* FROM {_VERSIONS}
WHERE NOT EXISTS (SELECT FROM commitment_checks k WHERE k.explanation_id = e.id)
ORDER BY e.unit, e.indicator, e.version
"""


@dataclass(frozen=True, slots=True)
class Link:
    id: str
    campaign_id: str
    recipient: str
    alert_ids: tuple[int, ...]
    message_key: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Explanation:
    id: int
    campaign_id: str
    unit: str
    indicator: str
    version: int
    cause: str
    detail: str
    commitment: Commitment
    value_then: int
    link_id: str
    submitted_at: datetime
    # when the next version was written (None: the latest, or not read)
    superseded_at: datetime | None = None

    @classmethod
    def from_row(cls, r: asyncpg.Record) -> "Explanation":
        return cls(
            r["id"],
            r["campaign_id"],
            r["unit"],
            r["indicator"],
            r["version"],
            r["cause"],
            r["detail"],
            Commitment(r["committed_date"], r["committed_rate"]),
            r["value_then"],
            r["link_id"],
            r["submitted_at"],
            r.get("superseded_at"),
        )


@dataclass(frozen=True, slots=True)
class CheckedCommitment:
    """A commitment's check as stored when it came due."""

    due_at: datetime
    checked_at: datetime
    met: bool
    value: int
    wanted: float


@dataclass(frozen=True, slots=True)
class Promised:
    """One version of an explanation, and its commitment's check if one was stored."""

    explanation: Explanation
    checked: CheckedCommitment | None


async def policy(conn: Connection, campaign_id: str) -> ExplanationPolicy:
    """The campaign's explanation policy, or the defaults."""
    row = await conn.fetchrow(SELECT_POLICY, campaign_id)
    if row is None:
        return ExplanationPolicy()
    return ExplanationPolicy(
        causes=tuple(Cause(c["code"], c["vi"], c["en"]) for c in json.loads(row["causes"])),
        snooze_max=timedelta(seconds=row["snooze_max_seconds"]),
        link_ttl=timedelta(seconds=row["link_ttl_seconds"]),
    )


async def save_policy(conn: Connection, campaign_id: str, p: ExplanationPolicy) -> None:
    causes = json.dumps([{"code": c.code, "vi": c.vi, "en": c.en} for c in p.causes])
    await conn.execute(
        UPSERT_POLICY,
        campaign_id,
        causes,
        int(p.snooze_max.total_seconds()),
        int(p.link_ttl.total_seconds()),
    )


async def create_link(
    conn: Connection,
    campaign_id: str,
    recipient: str,
    alert_ids: Sequence[int],
    message_key: str,
    issued_at: datetime,
    ttl: timedelta,
) -> Link:
    """A new link for one message: a random id the signed token names."""
    link = Link(
        secrets.token_urlsafe(18),
        campaign_id,
        recipient,
        tuple(alert_ids),
        message_key,
        issued_at,
        issued_at + ttl,
    )
    await conn.execute(
        INSERT_LINK,
        link.id,
        campaign_id,
        recipient,
        list(alert_ids),
        message_key,
        issued_at,
        link.expires_at,
    )
    return link


async def link(conn: Connection, link_id: str) -> Link | None:
    r = await conn.fetchrow(SELECT_LINK, link_id)
    if r is None:
        return None
    return Link(
        r["id"],
        r["campaign_id"],
        r["recipient"],
        tuple(r["alert_ids"]),
        r["message_key"],
        r["issued_at"],
        r["expires_at"],
    )


async def issue_nonce(conn: Connection, link_id: str, at: datetime) -> str:
    """A one-time token for one form of the link's page."""
    nonce = secrets.token_urlsafe(18)
    await conn.execute(INSERT_NONCE, nonce, link_id, at)
    return nonce


async def take_nonce(conn: Connection, nonce: str, link_id: str, action: str, at: datetime) -> bool:
    """Use a form's token; False when it was used before or is not this link's."""
    return await conn.fetchval(TAKE_NONCE, nonce, link_id, at, action) is not None


async def acknowledge(
    conn: Connection, alert_ids: Sequence[int], link_id: str, at: datetime, remote: str
) -> None:
    await conn.execute(INSERT_ACKS, list(alert_ids), link_id, at, remote)


async def acknowledged(
    conn: Connection, alert_ids: Sequence[int], recipient: str | None = None
) -> dict[int, datetime]:
    """The latest acknowledgement of each alert that has one (by `recipient`'s links only,
    when given)."""
    rows = await conn.fetch(SELECT_ACKS, list(alert_ids), recipient)
    return {r["alert_id"]: r["acknowledged_at"] for r in rows}


async def acknowledged_by_unit(conn: Connection, alert_ids: Sequence[int]) -> dict[int, datetime]:
    """The latest acknowledgement of each alert by its own unit's chief (`BY_OWN_UNIT`)."""
    rows = await conn.fetch(SELECT_OWN_ACKS, list(alert_ids))
    return {r["alert_id"]: r["acknowledged_at"] for r in rows}


async def snooze(
    conn: Connection,
    alert_ids: Sequence[int],
    link_id: str,
    starts_at: datetime,
    ends_at: datetime,
    remote: str,
) -> None:
    await conn.execute(INSERT_SNOOZES, list(alert_ids), link_id, starts_at, ends_at, remote)


async def snoozed(
    conn: Connection, alert_ids: Sequence[int], at: datetime, recipient: str | None = None
) -> dict[int, datetime]:
    """The end of the snooze in force at `at` of each alert that has one (by `recipient`'s
    links only, when given)."""
    rows = await conn.fetch(SELECT_SNOOZES, list(alert_ids), at, recipient)
    return {r["alert_id"]: r["ends_at"] for r in rows}


async def add_explanation(
    conn: Connection,
    campaign_id: str,
    unit: str,
    given: ExplanationIn,
    *,
    value_then: int,
    link_id: str,
    at: datetime,
    remote: str,
) -> Explanation:
    """Store an explanation as the next version of its (campaign, unit, indicator)."""
    async with conn.transaction():
        await conn.execute(LOCK_VERSIONS, campaign_id, unit, given.indicator)
        row = await conn.fetchrow(
            INSERT_EXPLANATION,
            campaign_id,
            unit,
            given.indicator,
            given.cause,
            given.detail,
            given.commitment.by,
            given.commitment.rate,
            value_then,
            link_id,
            at,
            remote,
        )
    assert row is not None  # INSERT … RETURNING
    return Explanation.from_row(row)


async def latest_explanations(
    conn: Connection, campaign_id: str, at: datetime, units: Sequence[str] | None = None
) -> dict[tuple[str, str], Explanation]:
    """The latest version, written by `at`, of each (unit, indicator) explained (of
    `units` only, when given)."""
    wanted = list(units) if units is not None else None
    rows = await conn.fetch(SELECT_LATEST, campaign_id, at, wanted)
    return {(r["unit"], r["indicator"]): Explanation.from_row(r) for r in rows}


async def versions(
    conn: Connection, campaign_id: str, unit: str, indicator: str
) -> list[Explanation]:
    """Every version of one explanation, oldest first."""
    rows = await conn.fetch(SELECT_VERSIONS, campaign_id, unit, indicator)
    return [Explanation.from_row(r) for r in rows]


async def open_commitments(conn: Connection, campaign_id: str) -> list[Explanation]:
    """Every version of the campaign's explanations not checked yet (`superseded_at` set)."""
    return [Explanation.from_row(r) for r in await conn.fetch(SELECT_OPEN_COMMITMENTS, campaign_id)]


async def record_check(
    conn: Connection,
    explanation_id: int,
    due_at: datetime,
    checked_at: datetime,
    met: bool,
    value: int,
    wanted: float,
) -> bool:
    """Store a commitment's check once; False when it was already checked."""
    found = await conn.fetchval(
        INSERT_CHECK, explanation_id, due_at, checked_at, met, value, wanted
    )
    return found is not None


async def commitments(conn: Connection, campaign_id: str, at: datetime) -> list[Promised]:
    """Every version written by `at` (`superseded_at` set) with its stored check, if any:
    what a briefing reads its commitments that came due from (`explanations.came_due`)."""
    out: list[Promised] = []
    for r in await conn.fetch(SELECT_COMMITMENTS, campaign_id, at):
        checked = None
        if r["checked_at"] is not None:
            checked = CheckedCommitment(
                r["checked_due_at"], r["checked_at"], r["met"], r["checked_value"], r["wanted"]
            )
        out.append(Promised(Explanation.from_row(r), checked))
    return out


SELECT_ACKNOWLEDGED_KEYS = f"""
SELECT DISTINCT a.unit, a.indicator FROM acknowledgements k JOIN alerts a ON a.id = k.alert_id
WHERE a.campaign_id = $1 AND k.acknowledged_at <= $2
  AND (a.resolved_at IS NULL OR a.resolved_at > $3) AND {BY_OWN_UNIT}
"""


async def acknowledged_keys(
    conn: Connection, campaign_id: str, since: datetime, at: datetime
) -> set[tuple[str, str]]:
    """(unit, indicator) of the alerts their own unit's chief acknowledged by `at`
    (`BY_OWN_UNIT`), still open after `since`."""
    rows = await conn.fetch(SELECT_ACKNOWLEDGED_KEYS, campaign_id, at, since)
    return {(r["unit"], r["indicator"]) for r in rows}
