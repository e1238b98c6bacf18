"""Versions of the unit tree (docs/units-over-time.md): reading them, writing a loaded
tree version and its crosswalk, and re-attributing stored events after a change."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from services.aggregator.repository.reference import SELECT_CHILDREN_AT, Unit
from services.aggregator.tree_versions import StoredVersion, VersionPlan
from tiendo import counting
from tiendo.board import repository as board
from tiendo.database import Connection

# -infinity reads as None: "since before anything tiendo knows"
SELECT_VERSIONS = """
SELECT code, admin_code, name, type, level, parent_code,
       nullif(valid_from, '-infinity') AS valid_from, valid_to
FROM units
"""

CLOSE_VERSION = """
UPDATE units SET valid_to = $2, grace_until = $3, updated_at = now() WHERE code = $1
"""

INSERT_VERSION = """
INSERT INTO units (code, admin_code, name, type, level, parent_code, valid_from, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now())
"""

# A retired code's grace never outlives the unit it leads to: when that unit closes in
# turn, events naming the old code are read through the new crosswalk, not counted to a
# closed version.
CAP_GRACE = """
UPDATE units o SET grace_until = $2
FROM unit_transfers t
WHERE t.old_unit = o.code AND t.transfer = 'whole' AND t.new_unit = ANY ($1::text[])
  AND o.grace_until > $2
"""

INSERT_TRANSFER = """
INSERT INTO unit_transfers (old_unit, new_unit, transfer, share, at) VALUES ($1, $2, $3, $4, $5)
"""

# A version's parent must be in force for the whole of the version's period: ancestors
# are computed over parent links, so a link to another period's version would give a
# unit ancestors it never had.
COUNT_PARENTS_OUT_OF_PERIOD = """
SELECT count(*) FROM units u JOIN units p ON p.code = u.parent_code
WHERE p.valid_from > u.valid_from
   OR coalesce(p.valid_to, 'infinity') < coalesce(u.valid_to, 'infinity')
"""

# A correction of a later version (keyed code@day; the first version of a code goes
# through the units upsert, whose insert half would not take such a key).
CORRECT_VERSION = """
UPDATE units SET name = $2, type = $3, level = $4, parent_code = $5, updated_at = now()
WHERE code = $1
"""

# Official codes as the tree in force reads them: the key of each code's open version, or
# the moment its last version closed (a retired code).
# A tree loaded ahead of its day has versions not yet in force: they are not "now" (a
# correction before the cut-over is to the version in force today).
SELECT_CODES_NOW = """
SELECT DISTINCT ON (admin_code) admin_code, code,
       CASE WHEN coalesce($2, now()) < coalesce(valid_to, 'infinity') THEN NULL
            ELSE valid_to END AS valid_to
FROM units WHERE admin_code = ANY ($1::text[]) AND valid_from <= coalesce($2, now())
ORDER BY admin_code, valid_from DESC
"""

SELECT_VERSIONS_OF = """
SELECT code, admin_code, name, type, level, parent_code, ancestors,
       nullif(valid_from, '-infinity') AS valid_from, valid_to, grace_until
FROM units WHERE admin_code = $1 OR code = $1
ORDER BY units.valid_from, units.code
"""

SELECT_TRANSFERS_OF = """
SELECT t.old_unit, t.new_unit, t.transfer, t.share, t.at, o.admin_code AS old_code,
       o.name AS old_name, n.admin_code AS new_code, n.name AS new_name
FROM unit_transfers t
JOIN units o ON o.code = t.old_unit
JOIN units n ON n.code = t.new_unit
WHERE t.old_unit = ANY ($1::text[]) OR t.new_unit = ANY ($1::text[])
ORDER BY t.at, t.old_unit, t.new_unit
"""


@dataclass(frozen=True, slots=True)
class VersionRow:
    """A stored version with its period and grace."""

    key: str
    admin_code: str
    name: str
    type: str
    level: int
    parent_key: str | None
    valid_from: datetime | None
    valid_to: datetime | None
    grace_until: datetime | None
    ancestors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TransferRow:
    old_key: str
    old_code: str
    old_name: str
    new_key: str
    new_code: str
    new_name: str
    transfer: str
    share: Decimal | None
    at: datetime


async def versions(conn: Connection) -> list[StoredVersion]:
    """Every version of every unit, as the pure loader takes them."""
    return [
        StoredVersion(
            r["code"],
            r["admin_code"],
            r["name"],
            r["type"],
            r["level"],
            r["parent_code"],
            r["valid_from"],
            r["valid_to"],
        )
        for r in await conn.fetch(SELECT_VERSIONS)
    ]


async def write_version(conn: Connection, plan: VersionPlan) -> None:
    """Close, open and link what `plan` says; then recompute ancestors over the versions.
    Raises ValueError when a parent link crosses periods (a bug of the plan, not of a
    file: the pure check refuses files)."""
    await conn.executemany(CLOSE_VERSION, [(c.key, plan.at, c.grace_until) for c in plan.closed])
    await conn.execute(CAP_GRACE, [c.key for c in plan.closed], plan.at)
    await conn.executemany(
        INSERT_VERSION,
        [
            (n.key, n.admin_code, n.name, n.type, n.level, n.parent_key, plan.at)
            for n in plan.opened
        ],
    )
    await conn.executemany(
        INSERT_TRANSFER,
        [(t.old_key, t.new_key, t.transfer, t.share, plan.at) for t in plan.transfers],
    )


async def parents_out_of_period(conn: Connection) -> int:
    """How many versions hang under a parent not in force for their whole period."""
    count: int = await conn.fetchval(COUNT_PARENTS_OUT_OF_PERIOD)
    return count


async def after_tree_change(conn: Connection) -> int:
    """What follows any change of the tree's versions, in the changing transaction.

    Every stored event is attributed again to the version its sent code meant when it
    happened, by the same rules as a batch being applied (`counting.reattribute`); returns
    how many moved. Then the counting follows the tree, given that number
    (`services.aggregator.cutover.after_tree_change`: moved events are recounted).
    """
    return await counting.reattribute(conn)


def is_later_version(key: str) -> bool:
    """Whether `key` names a version that reuses an earlier version's code."""
    return "@" in key


async def correct_versions(conn: Connection, units: Sequence[Unit]) -> None:
    """Correct name, type, level and parent of existing later versions, in place."""
    await conn.executemany(
        CORRECT_VERSION, [(u.code, u.name, u.type, u.level, u.parent_code) for u in units]
    )


async def codes_now(
    conn: Connection, codes: Sequence[str], now: datetime | None = None
) -> dict[str, tuple[str, datetime | None]]:
    """For each official code the tree knows: (the key of its version in force at `now`
    (None: the database's clock), None), or (its last version's key, when it closed) for a
    code retired by then."""
    rows = await conn.fetch(SELECT_CODES_NOW, list(codes), now)
    return {r["admin_code"]: (r["code"], r["valid_to"]) for r in rows}


async def versions_of(conn: Connection, code: str) -> list[VersionRow]:
    """Every version an official code (or a version key) has named, oldest first."""
    return [
        VersionRow(
            r["code"],
            r["admin_code"],
            r["name"],
            r["type"],
            r["level"],
            r["parent_code"],
            r["valid_from"],
            r["valid_to"],
            r["grace_until"],
            tuple(r["ancestors"]),
        )
        for r in await conn.fetch(SELECT_VERSIONS_OF, code)
    ]


async def transfers_of(conn: Connection, keys: Sequence[str]) -> list[TransferRow]:
    """The crosswalk rows into or out of these versions."""
    return [
        TransferRow(
            r["old_unit"],
            r["old_code"],
            r["old_name"],
            r["new_unit"],
            r["new_code"],
            r["new_name"],
            r["transfer"],
            r["share"],
            r["at"],
        )
        for r in await conn.fetch(SELECT_TRANSFERS_OF, list(keys))
    ]


# -- reading the tree of a moment ---------------------------------------------------------
# A unit asked about by key or by official code: the version in force at the moment (a
# key in force wins over another version's official code).
SELECT_VERSION_AT = """
SELECT code, admin_code, name, level, ancestors FROM units
WHERE (code = $1 OR admin_code = $1)
  AND valid_from <= $2 AND $2 < coalesce(valid_to, 'infinity')
ORDER BY code = $1 DESC, code
LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class VersionAt:
    key: str
    admin_code: str
    name: str
    level: int
    ancestors: tuple[str, ...]


def _version_at(r: asyncpg.Record) -> VersionAt:
    return VersionAt(r["code"], r["admin_code"], r["name"], r["level"], tuple(r["ancestors"]))


async def version_at(conn: Connection, code: str, at: datetime) -> VersionAt | None:
    """The version a key or an official code names at `at`, if any is in force then."""
    row = await conn.fetchrow(SELECT_VERSION_AT, code, at)
    return _version_at(row) if row is not None else None


async def key_named(conn: Connection, name: str, at: datetime) -> str:
    """The key of the version a unit named by the API is (docs/units-over-time.md): a later
    version's key names exactly its version, whatever the moment; an official code names
    its version in force at `at`, or, when none is then (a retired code), the first version
    it keys. The caller looks the key up: an unknown one is no unit."""
    version = await board.version_named(conn, name, at)
    return version.key if version is not None else name


async def children_at(conn: Connection, key: str, at: datetime) -> list[VersionAt]:
    """The versions in force at `at` whose parent is `key` (the statement of
    `reference.children_at`, read as versions)."""
    return [_version_at(r) for r in await conn.fetch(SELECT_CHILDREN_AT, key, at)]


SELECT_KEYS_AT = """
SELECT DISTINCT ON (admin_code) admin_code, code FROM units
WHERE admin_code = ANY ($1::text[])
  AND valid_from <= $2 AND $2 < coalesce(valid_to, 'infinity')
ORDER BY admin_code, code
"""


async def keys_at(conn: Connection, codes: Sequence[str], at: datetime) -> dict[str, str]:
    """Official code → the key of its version in force at `at`, for the codes that have one."""
    rows = await conn.fetch(SELECT_KEYS_AT, sorted(set(codes)), at)
    return {r["admin_code"]: r["code"] for r in rows}
