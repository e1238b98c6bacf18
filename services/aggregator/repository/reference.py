"""Reference data: the unit tree, campaigns, targets, the plan of each campaign."""

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from tiendo.board.campaign import Campaign
from tiendo.database import Connection

# -- reference data (admin) ---------------------------------------------------------------
UPSERT_UNIT = """
INSERT INTO units (code, name, type, level, parent_code, chief_name, chief_email, chief_phone,
                   chief_webhook, chief_chat, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())
ON CONFLICT (code) DO UPDATE
SET name = EXCLUDED.name, type = EXCLUDED.type, level = EXCLUDED.level,
    parent_code = EXCLUDED.parent_code, chief_name = EXCLUDED.chief_name,
    chief_email = EXCLUDED.chief_email, chief_phone = EXCLUDED.chief_phone,
    chief_webhook = EXCLUDED.chief_webhook, chief_chat = EXCLUDED.chief_chat, updated_at = now()
"""


# Ancestors (root first) of every unit, recomputed from parent links after an upsert.
REFRESH_ANCESTORS = """
WITH RECURSIVE chain AS (
    SELECT code, ARRAY[]::text[] AS ancestors FROM units WHERE parent_code IS NULL
    UNION ALL
    SELECT u.code, c.ancestors || u.parent_code
    FROM units u JOIN chain c ON u.parent_code = c.code
)
UPDATE units u SET ancestors = chain.ancestors
FROM chain WHERE chain.code = u.code AND u.ancestors IS DISTINCT FROM chain.ancestors
"""


COUNT_ORPHANS = """
SELECT count(*) FROM units u
WHERE u.parent_code IS NOT NULL
  AND cardinality(u.ancestors) <> u.level - 1
"""


SELECT_UNIT = "SELECT * FROM units WHERE code = $1"


SELECT_UNITS_BY_CODE = "SELECT * FROM units WHERE code = ANY ($1::text[])"


SELECT_CHILDREN = "SELECT * FROM units WHERE parent_code = $1 ORDER BY code"


SELECT_TREE = "SELECT code, parent_code, level FROM units"


UPSERT_CAMPAIGN = """
INSERT INTO campaigns (id, name, starts_at, deadline, timezone, indicators, behind_threshold,
                       stale_after, milestones, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
ON CONFLICT (id) DO UPDATE
SET name = EXCLUDED.name, starts_at = EXCLUDED.starts_at, deadline = EXCLUDED.deadline,
    timezone = EXCLUDED.timezone, indicators = EXCLUDED.indicators,
    behind_threshold = EXCLUDED.behind_threshold, stale_after = EXCLUDED.stale_after,
    milestones = EXCLUDED.milestones, updated_at = now()
"""


SELECT_CAMPAIGN = "SELECT * FROM campaigns WHERE id = $1"


SELECT_CAMPAIGNS = "SELECT * FROM campaigns ORDER BY starts_at DESC, id"


UPSERT_TARGET = """
INSERT INTO targets (campaign_id, unit, indicator, target, baseline, deadline)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (campaign_id, unit, indicator) DO UPDATE
SET target = EXCLUDED.target, baseline = EXCLUDED.baseline, deadline = EXCLUDED.deadline
"""


SELECT_TARGETS = (
    "SELECT unit, indicator, target, baseline, deadline FROM targets WHERE campaign_id = $1"
)


ENSURE_CAMPAIGN_ROWS = """
INSERT INTO progress (campaign_id, unit, indicator)
SELECT c.id, u.code, i.code
FROM campaigns c CROSS JOIN units u CROSS JOIN unnest(c.indicators) AS i (code)
WHERE c.id = $1
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING
"""


# An indicator taken out of a campaign leaves its boards, feed and metrics.
DELETE_DROPPED_INDICATORS = """
DELETE FROM progress p
USING campaigns c
WHERE c.id = $1 AND p.campaign_id = c.id AND NOT (p.indicator = ANY (c.indicators))
"""


PLAN_COLUMNS = ("unit", "indicator", "own_baseline", "baseline", "target", "deadline")


CREATE_PLAN_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS plan_in (
    unit text, indicator text, own_baseline bigint, baseline bigint, target bigint,
    deadline timestamptz
) ON COMMIT DROP
"""


APPLY_PLAN = """
UPDATE progress p
SET own_baseline = s.own_baseline, baseline = s.baseline, target = s.target,
    deadline = s.deadline, updated_at = now()
FROM plan_in s
WHERE p.campaign_id = $1 AND p.unit = s.unit AND p.indicator = s.indicator
"""


# Subtree values from the own columns: the authoritative rollup, used after re-planning.
RECOMPUTE_VALUES = """
UPDATE progress p
SET value = s.value, last_event_at = s.last_event_at
FROM (
    SELECT a.campaign_id, lineage.code AS unit, a.indicator,
           sum(coalesce(a.snap_value, a.own_baseline) + a.incr_after) AS value,
           max(a.own_last_event_at) AS last_event_at
    FROM progress a
    JOIN units u ON u.code = a.unit
    CROSS JOIN LATERAL unnest(u.ancestors || u.code) AS lineage (code)
    WHERE a.campaign_id = $1
    GROUP BY 1, 2, 3
) s
WHERE p.campaign_id = s.campaign_id AND p.unit = s.unit AND p.indicator = s.indicator
  AND (p.value, p.last_event_at) IS DISTINCT FROM (s.value, s.last_event_at)
"""


# What the campaign check (`validation.py`) needs, and a stamp that moves with any change
# of a campaign made through the admin API.
SELECT_CAMPAIGNS_STAMP = "SELECT count(*), max(updated_at) FROM campaigns"


SELECT_INDICATOR_CODES = "SELECT code FROM indicators"


SELECT_DATABASE_TIMEZONES = "SELECT name FROM pg_timezone_names"


SELECT_TARGET_DEADLINES = """
SELECT campaign_id, unit, indicator, deadline FROM targets
WHERE deadline IS NOT NULL AND ($1::text IS NULL OR campaign_id = $1)
"""


# -- reads of the HTTP API -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Unit:
    """A node of the unit tree; `ancestors` root first."""

    code: str
    name: str
    type: str
    level: int
    parent_code: str | None
    ancestors: tuple[str, ...]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "Unit":
        return cls(
            code=row["code"],
            name=row["name"],
            type=row["type"],
            level=row["level"],
            parent_code=row["parent_code"],
            ancestors=tuple(row["ancestors"]),
        )


async def unit(conn: Connection, code: str) -> Unit | None:
    row = await conn.fetchrow(SELECT_UNIT, code)
    return Unit.from_row(row) if row is not None else None


async def units_by_code(conn: Connection, codes: Sequence[str]) -> dict[str, Unit]:
    return {r["code"]: Unit.from_row(r) for r in await conn.fetch(SELECT_UNITS_BY_CODE, codes)}


async def children(conn: Connection, code: str) -> list[Unit]:
    """The unit's children, by code."""
    return [Unit.from_row(r) for r in await conn.fetch(SELECT_CHILDREN, code)]


async def campaign(conn: Connection, campaign_id: str) -> Campaign | None:
    row = await conn.fetchrow(SELECT_CAMPAIGN, campaign_id)
    return Campaign.from_row(row) if row is not None else None


async def campaigns(conn: Connection) -> list[Campaign]:
    """Every stored campaign, newest start first."""
    return [Campaign.from_row(r) for r in await conn.fetch(SELECT_CAMPAIGNS)]
