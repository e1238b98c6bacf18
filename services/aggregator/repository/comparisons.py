"""The stored comparisons the boards read (aggregator migration 013)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tiendo.database import Connection

# Each campaign's "previous" one: the latest that ended by its start and counts one of its
# indicators (Mệnh lệnh 01 of this year against that of 2023).
SELECT_PAIRS = """
SELECT c.id AS campaign_id, p.id AS other_id,
       ARRAY(SELECT unnest(c.indicators) INTERSECT SELECT unnest(p.indicators)) AS shared
FROM campaigns c
CROSS JOIN LATERAL (
    SELECT o.id, o.indicators FROM campaigns o
    WHERE o.deadline <= c.starts_at AND o.indicators && c.indicators
    ORDER BY o.deadline DESC, o.id
    LIMIT 1
) p
ORDER BY 1
"""

# A day's rows are history when written, but a late report from before the day's moment
# can still move them: they are written again when older than the refresh age.
IS_FRESH = """
SELECT EXISTS (SELECT 1 FROM board_comparisons
               WHERE campaign_id = $1 AND other_id = $2 AND indicator = $3 AND day = $4
                 AND computed_at > $6::timestamptz - $5::interval)
"""

INSERT_ROW = """
INSERT INTO board_comparisons (campaign_id, other_id, indicator, unit, day, level, value,
                               other_value, unallocated,
                               computed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (campaign_id, other_id, indicator, day, unit) DO UPDATE
SET level = EXCLUDED.level, value = EXCLUDED.value, other_value = EXCLUDED.other_value,
    unallocated = EXCLUDED.unallocated, computed_at = EXCLUDED.computed_at
"""

SELECT_ROOTS_AT = """
SELECT code FROM units
WHERE parent_code IS NULL AND valid_from <= $1 AND $1 < coalesce(valid_to, 'infinity')
ORDER BY code
"""


@dataclass(frozen=True, slots=True)
class Pair:
    campaign_id: str
    other_id: str
    shared: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredRow:
    unit: str
    level: int
    value: int
    other_value: int
    unallocated: int


async def pairs(conn: Connection) -> list[Pair]:
    return [
        Pair(r["campaign_id"], r["other_id"], tuple(sorted(r["shared"])))
        for r in await conn.fetch(SELECT_PAIRS)
    ]


async def is_fresh(
    conn: Connection, pair: Pair, indicator: str, day: int, age: timedelta, now: datetime
) -> bool:
    """Whether that day's rows were written less than `age` before `now` (the service's
    clock, which wrote them: not PostgreSQL's)."""
    found: bool = await conn.fetchval(
        IS_FRESH, pair.campaign_id, pair.other_id, indicator, day, age, now
    )
    return found


async def roots_at(conn: Connection, at: datetime) -> list[str]:
    return [r["code"] for r in await conn.fetch(SELECT_ROOTS_AT, at)]


async def store(
    conn: Connection,
    pair: Pair,
    indicator: str,
    day: int,
    rows: Sequence[StoredRow],
    now: datetime,
) -> None:
    await conn.executemany(
        INSERT_ROW,
        [
            (
                pair.campaign_id,
                pair.other_id,
                indicator,
                r.unit,
                day,
                r.level,
                r.value,
                r.other_value,
                r.unallocated,
                now,
            )
            for r in rows
        ],
    )
