"""Reference data the notifier reads or owns: policies, silences, audit, names, contacts."""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from tiendo import audit
from tiendo.database import Connection


@dataclass(frozen=True, slots=True)
class CampaignName:
    id: str
    name: str
    timezone: str


@dataclass(frozen=True, slots=True)
class IndicatorName:
    code: str
    name: str  # Vietnamese
    name_en: str  # may be empty

    def in_language(self, language: str) -> str:
        return (self.name_en if language == "en" else None) or self.name


@dataclass(frozen=True, slots=True)
class Contact:
    """Where a chief is reached on one channel."""

    channel: str
    address: str
    language: str | None  # None: the campaign policy's


@dataclass(frozen=True, slots=True)
class Recipient:
    """A unit as the recipient of messages: its chief and the chief's contacts."""

    unit: str
    name: str
    chief_name: str | None
    contacts: tuple[Contact, ...]


@dataclass(frozen=True, slots=True)
class Version:
    """A unit version's end (`valid_to`, the cut-over that closed it; None: in force) and
    its successors then (`unit`: key, `code`: official code, `name`), as a closing alert
    names them."""

    code: str
    valid_to: datetime | None
    successors: tuple[dict[str, str], ...]

    def closed_by(self, at: datetime) -> bool:
        """Whether a cut-over at or before `at` closed it (a later tree replaced it)."""
        return self.valid_to is not None and self.valid_to <= at


SELECT_POLICIES = "SELECT campaign_id, config FROM alert_policies"


SELECT_POLICY = "SELECT config FROM alert_policies WHERE campaign_id = $1"


UPSERT_POLICY = """
INSERT INTO alert_policies (campaign_id, config, updated_at, updated_by)
VALUES ($1, $2, now(), $3)
ON CONFLICT (campaign_id) DO UPDATE
SET config = EXCLUDED.config, updated_at = now(), updated_by = EXCLUDED.updated_by
"""


# Every admin change (aggregator or notifier) writes one audit row: its last id is a cheap
# version of the reference data.
SELECT_REFERENCE_VERSION = "SELECT coalesce(max(id), 0) FROM audit_log"


SELECT_CAMPAIGN_NAMES = "SELECT id, name, timezone FROM campaigns"


SELECT_INDICATOR_NAMES = "SELECT code, name, name_en FROM indicators"


# Units among $1 as recipients: the name (the aggregator's), the chief and the contacts
# (the notifier's own).
RECIPIENTS = """
SELECT u.code, u.name, h.name AS chief_name,
       coalesce((SELECT jsonb_agg(jsonb_build_object('channel', c.channel,
                                                     'address', c.address,
                                                     'language', c.language)
                                  ORDER BY c.channel)
                 FROM contacts c WHERE c.unit = u.code), '[]') AS contacts
FROM units u LEFT JOIN chiefs h ON h.unit = u.code
WHERE u.code = ANY ($1::text[])
ORDER BY u.code
"""


SELECT_ANCESTORS = "SELECT ancestors FROM units WHERE code = $1"


# The versions among $1 (keys) in force at $2: their period holds the moment.
SELECT_IN_FORCE = """
SELECT code FROM units
WHERE code = ANY ($1::text[]) AND valid_from <= $2 AND $2 < coalesce(valid_to, 'infinity')
"""


# The versions among $1 (keys): their end and where their people went at the cut-over
# that closed them (the crosswalk), successors by key.
SELECT_VERSIONS = """
SELECT u.code, u.valid_to,
       coalesce(jsonb_agg(jsonb_build_object('unit', t.new_unit, 'code', n.admin_code,
                                             'name', n.name)
                          ORDER BY t.new_unit) FILTER (WHERE t.new_unit IS NOT NULL),
                '[]') AS successors
FROM units u
LEFT JOIN unit_transfers t ON t.old_unit = u.code
LEFT JOIN units n ON n.code = t.new_unit
WHERE u.code = ANY ($1::text[])
GROUP BY u.code
"""


DELETE_CONTACTS = "DELETE FROM contacts WHERE unit = $1"


INSERT_CONTACT = "INSERT INTO contacts (unit, channel, address, language) VALUES ($1, $2, $3, $4)"


DELETE_CHIEF = "DELETE FROM chiefs WHERE unit = $1"


UPSERT_CHIEF = """
INSERT INTO chiefs (unit, name) VALUES ($1, $2)
ON CONFLICT (unit) DO UPDATE SET name = EXCLUDED.name, updated_at = now()
"""


# A silence mutes from its start until its end or, ended early (DELETE), its expiry: the
# SQL of `groups.silence_of(row).active(at)`, so that evaluation and `GET /v1/silences`
# read the same silences as active. `$1` is the moment.
SILENCE_ACTIVE = (
    "(s.expired_at IS NULL OR s.expired_at > $1) AND s.starts_at <= $1 AND s.ends_at > $1"
)


ACTIVE_SILENCES = f"SELECT s.* FROM silences s WHERE {SILENCE_ACTIVE}"


INSERT_SILENCE = """
INSERT INTO silences (campaign_id, unit, indicator, rule, starts_at, ends_at, created_by,
                      comment)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *
"""


# (with the name of the version the silence's unit is, for whoever reads the list)
SELECT_SILENCES = f"""
SELECT s.*, u.name AS unit_name FROM silences s LEFT JOIN units u ON u.code = s.unit
WHERE ($2::boolean IS NOT TRUE OR ({SILENCE_ACTIVE}))
ORDER BY s.id DESC
LIMIT $3
"""


SELECT_CAMPAIGN_KNOWN = "SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = $1)"


SELECT_INDICATOR_KNOWN = "SELECT EXISTS (SELECT 1 FROM indicators WHERE code = $1)"


SELECT_SILENCE = "SELECT * FROM silences WHERE id = $1"


EXPIRE_SILENCE = """
UPDATE silences SET expired_at = $2 WHERE id = $1 AND expired_at IS NULL RETURNING *
"""


async def policies(conn: Connection) -> dict[str, dict[str, Any]]:
    return {r["campaign_id"]: json.loads(r["config"]) for r in await conn.fetch(SELECT_POLICIES)}


async def policy(conn: Connection, campaign_id: str) -> dict[str, Any] | None:
    config = await conn.fetchval(SELECT_POLICY, campaign_id)
    return json.loads(config) if config is not None else None


async def save_policy(
    conn: Connection, campaign_id: str, config: dict[str, Any], actor: str
) -> None:
    await conn.execute(UPSERT_POLICY, campaign_id, json.dumps(config), actor)
    await audit.record(
        conn, actor=actor, action="alert_policy.put", subject=campaign_id, details=config
    )


async def campaign_names(conn: Connection) -> dict[str, CampaignName]:
    return {
        r["id"]: CampaignName(r["id"], r["name"], r["timezone"])
        for r in await conn.fetch(SELECT_CAMPAIGN_NAMES)
    }


async def indicator_names(conn: Connection) -> dict[str, IndicatorName]:
    return {
        r["code"]: IndicatorName(r["code"], r["name"], r["name_en"])
        for r in await conn.fetch(SELECT_INDICATOR_NAMES)
    }


async def recipients(conn: Connection, codes: Sequence[str]) -> dict[str, Recipient]:
    """The units among `codes` (those that exist) as recipients of messages."""
    return {
        r["code"]: Recipient(
            r["code"],
            r["name"],
            r["chief_name"],
            tuple(Contact(**c) for c in json.loads(r["contacts"])),
        )
        for r in await conn.fetch(RECIPIENTS, list(codes))
    }


async def unit(conn: Connection, code: str) -> Recipient | None:
    """The unit `code` as a recipient; None if there is no such unit."""
    return (await recipients(conn, [code])).get(code)


async def in_force(conn: Connection, keys: Sequence[str], at: datetime) -> set[str]:
    """The unit versions among `keys` in force at `at`."""
    return {r["code"] for r in await conn.fetch(SELECT_IN_FORCE, list(keys), at)}


async def versions(conn: Connection, keys: Sequence[str]) -> dict[str, Version]:
    """The unit versions among `keys` (those that exist), with their successors."""
    if not keys:
        return {}
    return {
        r["code"]: Version(
            r["code"],
            r["valid_to"],
            tuple(
                json.loads(r["successors"]) if isinstance(r["successors"], str) else r["successors"]
            ),
        )
        for r in await conn.fetch(SELECT_VERSIONS, list(keys))
    }


async def replace_contacts(
    conn: Connection, unit: str, chief_name: str | None, contacts: Sequence[Contact], actor: str
) -> None:
    """The unit's chief and every contact, as given (a channel not listed is dropped)."""
    await conn.execute(DELETE_CONTACTS, unit)
    await conn.executemany(
        INSERT_CONTACT, [(unit, c.channel, c.address, c.language) for c in contacts]
    )
    if chief_name:
        await conn.execute(UPSERT_CHIEF, unit, chief_name)
    else:
        await conn.execute(DELETE_CHIEF, unit)
    await audit.record(
        conn,
        actor=actor,
        action="contacts.put",
        subject=unit,
        details={"channels": [c.channel for c in contacts]},
    )


async def ancestors(conn: Connection, code: str) -> list[str]:
    """The unit's parent chain, root first (empty for an unknown unit)."""
    found = await conn.fetchval(SELECT_ANCESTORS, code)
    return list(found) if found is not None else []


async def active_silences(conn: Connection, at: datetime) -> list[asyncpg.Record]:
    return list(await conn.fetch(ACTIVE_SILENCES, at))


async def reference_version(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        version: int = await conn.fetchval(SELECT_REFERENCE_VERSION)
    return version


async def campaign_known(conn: Connection, campaign_id: str) -> bool:
    """Whether the aggregator has a campaign `campaign_id`."""
    known: bool = await conn.fetchval(SELECT_CAMPAIGN_KNOWN, campaign_id)
    return known


async def indicator_known(conn: Connection, code: str) -> bool:
    """Whether `code` is in the aggregator's catalogue of indicators."""
    known: bool = await conn.fetchval(SELECT_INDICATOR_KNOWN, code)
    return known


async def create_silence(
    conn: Connection,
    *,
    campaign: str | None,
    unit: str | None,
    indicator: str | None,
    rule: str | None,
    starts_at: datetime,
    ends_at: datetime,
    created_by: str,
    comment: str,
    actor: str,
) -> dict[str, Any]:
    """Store a silence and audit it; the stored row."""
    row = await conn.fetchrow(
        INSERT_SILENCE, campaign, unit, indicator, rule, starts_at, ends_at, created_by, comment
    )
    assert row is not None  # INSERT … RETURNING
    silence = dict(row)
    await audit.record(
        conn, actor=actor, action="silence.create", subject=str(silence["id"]), details=silence
    )
    return silence


async def list_silences(
    conn: Connection, *, active: bool | None, at: datetime, limit: int
) -> list[dict[str, Any]]:
    """Silences, newest first; `active`: only those muting at `at` (`SILENCE_ACTIVE`)."""
    return [dict(r) for r in await conn.fetch(SELECT_SILENCES, at, active, limit)]


async def expire_silence(conn: Connection, silence_id: int, at: datetime, actor: str) -> bool:
    """End a silence at `at` and audit it; False when it had already ended, LookupError
    when there is no such silence."""
    if await conn.fetchrow(EXPIRE_SILENCE, silence_id, at) is None:
        if await conn.fetchrow(SELECT_SILENCE, silence_id) is None:
            raise LookupError(f"no silence {silence_id}")
        return False
    await audit.record(
        conn, actor=actor, action="silence.expire", subject=str(silence_id), details={}
    )
    return True
