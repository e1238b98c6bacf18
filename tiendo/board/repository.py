"""The board's SQL over the aggregator's tables (read only). Callers own transactions."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from tiendo.board.campaign import Campaign
from tiendo.database import Connection

SELECT_CAMPAIGNS = "SELECT * FROM campaigns ORDER BY starts_at DESC, id"
SELECT_CAMPAIGN = "SELECT * FROM campaigns WHERE id = $1"
SELECT_LEVEL = "SELECT code FROM units WHERE level = $1 ORDER BY code"
SELECT_UP_TO_LEVEL = "SELECT code FROM units WHERE level <= $1 ORDER BY code"
_COUNTERS = """
SELECT p.unit, u.name AS unit_name, u.level, u.parent_code, p.indicator, p.value,
       p.baseline, p.target, p.deadline, p.last_event_at
FROM progress p JOIN units u ON u.code = p.unit
"""
SELECT_COUNTERS_OF = (
    _COUNTERS + "WHERE p.campaign_id = $1 AND p.indicator = $2 AND p.unit = ANY ($3::text[])"
)
# Every (unit, indicator) the campaign judges: those with a target, set or summed up.
SELECT_TARGETED = (
    _COUNTERS + "WHERE p.campaign_id = $1 AND p.target > 0 ORDER BY p.indicator, p.unit"
)
# Each root's subtree value and last event at time T, from the event history (SPEC §5):
# per unit, the latest snapshot in [start, T] plus counted increments after it, or the
# own baseline plus counted increments in [start, T]; then summed over the subtree.
VALUES_AS_OF = """
WITH roots AS (
    SELECT DISTINCT code FROM unnest($1::text[]) AS r (code)
), members AS (
    -- each unit under (or equal to) a requested root, via its lineage: O(units x depth),
    -- hash-joined (`= ANY` of a national tree's 11,000 roots compared every pair: 9 s)
    SELECT lineage.code AS root, u.code
    FROM units u CROSS JOIN LATERAL unnest(u.ancestors || u.code) AS lineage (code)
    JOIN roots ON roots.code = lineage.code
), own_units AS (
    SELECT DISTINCT code FROM members
), snaps AS (
    SELECT DISTINCT ON (e.unit, e.indicator) e.unit, e.indicator, e.occurred_at, e.value
    FROM events e JOIN own_units o ON o.code = e.unit
    WHERE e.indicator = ANY ($3::text[]) AND e.kind = 'snapshot'
      AND e.occurred_at >= $4 AND e.occurred_at <= $5
    ORDER BY e.unit, e.indicator, e.occurred_at DESC, e.event_id DESC
), incs AS (
    SELECT e.unit, e.indicator, sum(e.value) AS total
    FROM events e
    JOIN own_units o ON o.code = e.unit
    LEFT JOIN snaps s ON s.unit = e.unit AND s.indicator = e.indicator
    WHERE e.indicator = ANY ($3::text[]) AND e.kind = 'increment' AND e.counted
      AND e.occurred_at >= $4 AND e.occurred_at <= $5
      AND (s.occurred_at IS NULL OR e.occurred_at > s.occurred_at)
    GROUP BY e.unit, e.indicator
), lasts AS (
    SELECT e.unit, e.indicator, max(e.occurred_at) AS last_at
    FROM events e JOIN own_units o ON o.code = e.unit
    -- as the live counters: a subject's repeat is recorded, not counted, not a report
    WHERE e.indicator = ANY ($3::text[]) AND e.counted
      AND e.occurred_at >= $4 AND e.occurred_at <= $5
    GROUP BY e.unit, e.indicator
), own AS (
    SELECT o.code, i.indicator,
           coalesce(s.value, coalesce(t.baseline, 0)) + coalesce(n.total, 0) AS value,
           l.last_at
    FROM own_units o
    CROSS JOIN unnest($3::text[]) AS i (indicator)
    LEFT JOIN snaps s ON s.unit = o.code AND s.indicator = i.indicator
    LEFT JOIN incs n ON n.unit = o.code AND n.indicator = i.indicator
    LEFT JOIN lasts l ON l.unit = o.code AND l.indicator = i.indicator
    LEFT JOIN targets t
           ON t.campaign_id = $2 AND t.unit = o.code AND t.indicator = i.indicator
)
SELECT m.root, own.indicator, sum(own.value)::bigint AS value,
       max(own.last_at) AS last_event_at
FROM members m JOIN own ON own.code = m.code
GROUP BY m.root, own.indicator
"""


@dataclass(frozen=True, slots=True)
class Counter:
    """One (unit, indicator) of a campaign as the live counters hold it."""

    unit: str
    unit_name: str
    level: int
    parent: str | None
    indicator: str
    value: int
    baseline: int
    target: int
    deadline: datetime | None  # the unit's own deadline, if it has one
    last_event_at: datetime | None

    @classmethod
    def from_row(cls, r: asyncpg.Record) -> "Counter":
        return cls(
            r["unit"],
            r["unit_name"],
            r["level"],
            r["parent_code"],
            r["indicator"],
            r["value"],
            r["baseline"],
            r["target"],
            r["deadline"],
            r["last_event_at"],
        )


@dataclass(frozen=True, slots=True)
class ValueAt:
    value: int
    last_event_at: datetime | None


async def campaigns(conn: Connection) -> dict[str, Campaign]:
    """Every campaign whose figures can be judged (see `Campaign.judgeable`)."""
    found = (Campaign.from_row(r) for r in await conn.fetch(SELECT_CAMPAIGNS))
    return {c.id: c for c in found if c.judgeable()}


async def campaign(conn: Connection, campaign_id: str) -> Campaign | None:
    row = await conn.fetchrow(SELECT_CAMPAIGN, campaign_id)
    return Campaign.from_row(row) if row is not None else None


async def level_codes(conn: Connection, level: int) -> list[str]:
    return [r["code"] for r in await conn.fetch(SELECT_LEVEL, level)]


async def codes_up_to_level(conn: Connection, level: int) -> list[str]:
    return [r["code"] for r in await conn.fetch(SELECT_UP_TO_LEVEL, level)]


async def counters_of(
    conn: Connection, campaign_id: str, indicator: str, codes: Sequence[str]
) -> list[Counter]:
    rows = await conn.fetch(SELECT_COUNTERS_OF, campaign_id, indicator, list(codes))
    return [Counter.from_row(r) for r in rows]


async def targeted(conn: Connection, campaign_id: str) -> list[Counter]:
    return [Counter.from_row(r) for r in await conn.fetch(SELECT_TARGETED, campaign_id)]


async def values_as_of(
    conn: Connection,
    campaign_id: str,
    indicator: str,
    roots: Sequence[str],
    starts_at: datetime,
    at: datetime,
) -> dict[str, ValueAt]:
    """Each root's subtree value and last event at `at`, from the event history."""
    found = await values_as_of_many(conn, campaign_id, [indicator], roots, starts_at, at)
    return {root: v for (_, root), v in found.items()}


async def values_as_of_many(
    conn: Connection,
    campaign_id: str,
    indicators: Sequence[str],
    roots: Sequence[str],
    starts_at: datetime,
    at: datetime,
) -> dict[tuple[str, str], ValueAt]:
    """`values_as_of` of several indicators in one reading of the history, by
    (indicator, root)."""
    rows = await conn.fetch(VALUES_AS_OF, list(roots), campaign_id, list(indicators), starts_at, at)
    return {(r["indicator"], r["root"]): ValueAt(r["value"], r["last_event_at"]) for r in rows}
