"""Reference data: the unit tree, campaigns, targets, the plan of each campaign."""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from tiendo.board.campaign import Campaign, moving
from tiendo.board.plans import PlanRow
from tiendo.board.repository import SELECT_CAMPAIGN, SELECT_CAMPAIGNS, Target
from tiendo.counting import batch
from tiendo.database import Connection

# -- reference data (admin) ---------------------------------------------------------------
UPSERT_UNIT = """
INSERT INTO units (code, name, type, level, parent_code, updated_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (code) DO UPDATE
SET name = EXCLUDED.name, type = EXCLUDED.type, level = EXCLUDED.level,
    parent_code = EXCLUDED.parent_code, updated_at = now()
"""

SELECT_STORED_CODES = "SELECT code FROM units WHERE code = ANY ($1::text[])"

# A code the tree never had begins where the nearest stored unit above it does: under a
# unit a tree version opened, it cannot have been in force before its parent (its
# ancestors would not exist then), and no event from before then can be its anyway. Walked
# up through the codes inserted with it ($1), which may be one another's parents; a loop
# among them is refused afterwards (`admin.refuse_parent_loops`), the path only stops it.
START_NEW_UNITS = """
WITH RECURSIVE up AS (
    SELECT u.code AS unit, u.parent_code AS above, ARRAY[u.code] AS path
    FROM units u WHERE u.code = ANY ($1::text[])
    UNION ALL
    SELECT up.unit, p.parent_code, up.path || p.code
    FROM up JOIN units p ON p.code = up.above
    WHERE p.code = ANY ($1::text[]) AND NOT p.code = ANY (up.path)
)
UPDATE units u SET valid_from = a.valid_from
FROM up JOIN units a ON a.code = up.above
WHERE u.code = up.unit AND NOT a.code = ANY ($1::text[])
  AND u.valid_from IS DISTINCT FROM a.valid_from
"""


# The chiefs' contacts belong to the notifier: the contact columns of a units import go to
# the function it publishes for them (notifier migration 006), which runs with its rights.
HAND_OVER_CONTACTS = "SELECT notifier.hand_over_unit_contacts($1::jsonb)"


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


REFRESH_UNIT_ANCHORS = "SELECT aggregator.refresh_unit_anchors()"


# Units whose parent chain never reaches a root: those of a loop, and those under one. The
# refresh above starts from the roots, so it never reaches them (nor corrects their
# ancestors); this walk ends for the same reason.
SELECT_UNROOTED = """
WITH RECURSIVE rooted AS (
    SELECT code FROM units WHERE parent_code IS NULL
    UNION ALL
    SELECT u.code FROM units u JOIN rooted r ON u.parent_code = r.code
)
SELECT code, parent_code FROM units u
WHERE NOT EXISTS (SELECT FROM rooted r WHERE r.code = u.code)
"""


COUNT_ORPHANS = """
SELECT count(*) FROM units u
WHERE u.parent_code IS NOT NULL
  AND cardinality(u.ancestors) <> u.level - 1
"""


SELECT_UNIT = "SELECT * FROM units WHERE code = $1"


SELECT_UNITS_BY_CODE = "SELECT * FROM units WHERE code = ANY ($1::text[])"


SELECT_CHILDREN = "SELECT * FROM units WHERE parent_code = $1 ORDER BY code"
# the children in force at a moment (a closed district keeps its wards as they were)
SELECT_CHILDREN_AT = """
SELECT * FROM units
WHERE parent_code = $1 AND valid_from <= $2 AND $2 < coalesce(valid_to, 'infinity')
ORDER BY code
"""


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


# A column the change does not give ($7, $8, $9 false) keeps the stored value; a new
# target takes the defaults then (the children's sum, baseline 0, the campaign's deadline).
UPSERT_TARGET = """
INSERT INTO targets (campaign_id, unit, indicator, target, baseline, deadline)
VALUES ($1, $2, $3, $4, coalesce($5, 0), $6)
ON CONFLICT (campaign_id, unit, indicator) DO UPDATE
SET target = CASE WHEN $7 THEN EXCLUDED.target ELSE targets.target END,
    baseline = CASE WHEN $8 THEN EXCLUDED.baseline ELSE targets.baseline END,
    deadline = CASE WHEN $9 THEN EXCLUDED.deadline ELSE targets.deadline END
"""


SELECT_STORED_TARGETS = """
SELECT t.unit, t.indicator, t.target, t.baseline, t.deadline
FROM targets t
JOIN unnest($2::text[], $3::text[]) AS k (unit, indicator)
  ON k.unit = t.unit AND k.indicator = t.indicator
WHERE t.campaign_id = $1
"""


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


# Subtree values from the own columns on the campaign's tree: the authoritative rollup,
# used after re-planning (the counting room's, which a batch carried by shares uses too).
RECOMPUTE_VALUES = batch.RECOMPUTE_VALUES


# The moment whose tree a campaign reports on now: the tree in force at
# min(max(now, start), deadline), at its latest boundary (docs/units-over-time.md).
# $2: now (NULL: the database's).
SET_TREE_AT = """
UPDATE campaigns
SET tree_at = aggregator_read.tree_moment(
    least(greatest(coalesce($2::timestamptz, now()), starts_at), deadline))
WHERE id = $1
RETURNING tree_at
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


# -- named functions: what callers use; they return dataclasses and plain values ----------
@dataclass(frozen=True, slots=True)
class Unit:
    """A node of the unit tree; `ancestors` root first (kept by the database)."""

    code: str
    name: str
    type: str
    level: int
    parent_code: str | None
    ancestors: tuple[str, ...] = ()

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


async def children_at(conn: Connection, code: str, at: datetime) -> list[Unit]:
    """The unit's children in force at `at`, by code."""
    return [Unit.from_row(r) for r in await conn.fetch(SELECT_CHILDREN_AT, code, at)]


@dataclass(frozen=True, slots=True)
class TargetDeadline:
    campaign_id: str
    unit: str
    indicator: str
    deadline: datetime


@dataclass(frozen=True, slots=True)
class StoredCampaign:
    """A campaign row as stored: the campaign, or why the row reads as none."""

    id: str
    campaign: Campaign | None
    unreadable: str | None = None


async def upsert_units(conn: Connection, units: Sequence[Unit]) -> None:
    """Insert or correct first versions; a code new to the tree starts when its parent's
    version does (`START_NEW_UNITS`), a stored one keeps its period."""
    stored = {r["code"] for r in await conn.fetch(SELECT_STORED_CODES, [u.code for u in units])}
    await conn.executemany(
        UPSERT_UNIT, [(u.code, u.name, u.type, u.level, u.parent_code) for u in units]
    )
    await conn.execute(START_NEW_UNITS, [u.code for u in units if u.code not in stored])


async def hand_over_contacts(conn: Connection, rows: Sequence[Mapping[str, str | None]]) -> None:
    """Give the contact columns of a units import ({code, chief_…}) to the notifier."""
    await conn.execute(HAND_OVER_CONTACTS, json.dumps(list(rows), ensure_ascii=False))


async def unrooted(conn: Connection) -> dict[str, str | None]:
    """Every unit (by key) whose parent chain never reaches a root, with its parent."""
    return {r["code"]: r["parent_code"] for r in await conn.fetch(SELECT_UNROOTED)}


async def check_tree(conn: Connection) -> int:
    """Check the parent links now and recompute every unit's ancestors; return how many
    units' levels disagree with their depth (loops are `unrooted`'s to find: a loop's
    units keep their old ancestors, which may still agree)."""
    await conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
    await conn.execute(REFRESH_ANCESTORS)
    orphans: int = await conn.fetchval(COUNT_ORPHANS)
    # where each version lands on each moment's tree, read by every counting form
    await conn.execute(REFRESH_UNIT_ANCHORS)
    return orphans


async def upsert_campaign(conn: Connection, c: Campaign) -> None:
    milestones = [{"at": m.at.isoformat(), "fraction": m.fraction} for m in c.milestones]
    await conn.execute(
        UPSERT_CAMPAIGN,
        c.id,
        c.name,
        c.starts_at,
        c.deadline,
        c.timezone,
        list(c.indicators),
        c.thresholds.behind,
        c.thresholds.stale_after,
        json.dumps(milestones),
    )


async def campaign(conn: Connection, campaign_id: str) -> Campaign | None:
    row = await conn.fetchrow(SELECT_CAMPAIGN, campaign_id)
    return Campaign.from_row(row) if row is not None else None


async def campaigns(conn: Connection) -> list[Campaign]:
    """Every stored campaign, newest start first."""
    return [Campaign.from_row(r) for r in await conn.fetch(SELECT_CAMPAIGNS)]


async def campaign_indicators(conn: Connection, campaign_id: str) -> tuple[str, ...] | None:
    """The campaign's indicators (None: no such campaign), read even from a row that reads
    as no campaign (see `stored_campaigns`)."""
    row = await conn.fetchrow(SELECT_CAMPAIGN, campaign_id)
    return tuple(row["indicators"]) if row is not None else None


async def campaign_ids(conn: Connection) -> list[str]:
    return [r["id"] for r in await conn.fetch(SELECT_CAMPAIGNS)]


async def stored_campaigns(conn: Connection) -> list[StoredCampaign]:
    """Every stored campaign; a row that reads as no campaign (edited with SQL, written
    before validation existed) is kept with the reason."""
    out: list[StoredCampaign] = []
    for row in await conn.fetch(SELECT_CAMPAIGNS):
        try:
            out.append(StoredCampaign(row["id"], Campaign.from_row(row)))
        except (ValueError, KeyError, TypeError) as exc:
            out.append(StoredCampaign(row["id"], None, str(exc)))
    return out


async def campaigns_stamp(conn: Connection) -> tuple[int, datetime | None]:
    """Moves with any change of a campaign made through the admin API."""
    row = await conn.fetchrow(SELECT_CAMPAIGNS_STAMP)
    assert row is not None
    return row[0], row[1]


@dataclass(frozen=True, slots=True)
class TargetChange:
    """A target as an admin change gives it: `sets` names which of `target`, `baseline`
    and `deadline` it gives; the others keep their stored values (defaults when new)."""

    unit: str
    indicator: str
    target: int | None
    baseline: int | None
    deadline: datetime | None
    sets: frozenset[str]


async def upsert_targets(
    conn: Connection, campaign_id: str, targets: Sequence[TargetChange]
) -> None:
    await conn.executemany(
        UPSERT_TARGET,
        [
            (
                campaign_id,
                t.unit,
                t.indicator,
                t.target,
                t.baseline,
                t.deadline,
                "target" in t.sets,
                "baseline" in t.sets,
                "deadline" in t.sets,
            )
            for t in targets
        ],
    )


async def stored_targets(
    conn: Connection, campaign_id: str, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Target]:
    """The stored targets of the campaign among `keys` (unit, indicator)."""
    rows = await conn.fetch(
        SELECT_STORED_TARGETS, campaign_id, [k[0] for k in keys], [k[1] for k in keys]
    )
    return {
        (r["unit"], r["indicator"]): Target(
            r["unit"], r["indicator"], r["target"], r["baseline"], r["deadline"]
        )
        for r in rows
    }


async def target_deadlines(conn: Connection, campaign_id: str | None) -> list[TargetDeadline]:
    """Unit-specific deadlines of one campaign, or of all (None)."""
    return [
        TargetDeadline(r["campaign_id"], r["unit"], r["indicator"], r["deadline"])
        for r in await conn.fetch(SELECT_TARGET_DEADLINES, campaign_id)
    ]


async def indicator_codes(conn: Connection) -> set[str]:
    return {r["code"] for r in await conn.fetch(SELECT_INDICATOR_CODES)}


async def database_timezones(conn: Connection) -> set[str]:
    return {r["name"] for r in await conn.fetch(SELECT_DATABASE_TIMEZONES)}


async def ensure_campaign_rows(conn: Connection, campaign_id: str) -> None:
    """A progress row for every unit and indicator of the campaign; those of indicators
    taken out of it go."""
    await conn.execute(DELETE_DROPPED_INDICATORS, campaign_id)
    await conn.execute(ENSURE_CAMPAIGN_ROWS, campaign_id)


async def apply_plan(conn: Connection, campaign_id: str, plan: Sequence[PlanRow]) -> None:
    """Store the campaign's targets, baselines and deadlines on its progress rows."""
    await conn.execute(CREATE_PLAN_STAGING)
    await conn.copy_records_to_table(
        "plan_in",
        records=[
            (p.unit, p.indicator, p.own_baseline, p.baseline, p.target, p.deadline) for p in plan
        ],
        columns=PLAN_COLUMNS,
    )
    await conn.execute(APPLY_PLAN, campaign_id)
    # the next campaign re-planned in this transaction stages its own plan
    await conn.execute("DROP TABLE plan_in")


async def recompute_values(conn: Connection, campaign_id: str) -> None:
    """Subtree values and last events of the campaign from the own columns."""
    await conn.execute(RECOMPUTE_VALUES, campaign_id)


async def refresh_unit_anchors(conn: Connection) -> None:
    """Where each version lands on each moment's tree, again (after a tree change)."""
    await conn.execute(REFRESH_UNIT_ANCHORS)


async def set_tree_at(conn: Connection, campaign_id: str, now: datetime | None) -> datetime:
    """Move the campaign onto the tree it reports on at `now` (None: the database's
    clock); the moment chosen."""
    moment: datetime = await conn.fetchval(SET_TREE_AT, campaign_id, now)
    return moment


async def tree_passed(conn: Connection, now: datetime | None) -> list[Campaign]:
    """The campaigns whose live counters are not on the tree they report on at `now`
    (None: the database's clock), by id: `Campaign.counters_on_tree`, the rule every
    reader of live figures asks."""
    at: datetime = now if now is not None else await conn.fetchval("SELECT now()")
    everyone = await campaigns(conn)
    passed = moving(everyone, at)
    return [c for c in sorted(everyone, key=lambda c: c.id) if c.id in passed]
