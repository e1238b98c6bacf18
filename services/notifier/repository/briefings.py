"""The weekly briefing's stored bottom ranks and the history version they came from."""

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from tiendo.counting.rules import local_day, local_hour
from tiendo.database import Connection

SELECT_RANKS = "SELECT * FROM briefing_ranks WHERE campaign_id = $1 AND slot = $2"


INSERT_RANKS = """
INSERT INTO briefing_ranks (campaign_id, slot, indicator, unit, rank, of_units, pct)
SELECT $1, $2, i, u, r, o, p
FROM unnest($3::text[], $4::text[], $5::int[], $6::int[], $7::float8[]) AS t (i, u, r, o, p)
ON CONFLICT DO NOTHING
"""


# One marker row per (campaign, slot) makes "the ranking of this slot was stored" visible
# even when nobody was in the bottom (every unit had reached its target), and holds the
# version of history and reference data it was computed from.
RANKS_STORED = """
INSERT INTO briefing_ranks (campaign_id, slot, indicator, unit, rank, of_units, pct,
                            history_version)
VALUES ($1, $2, '', '', 0, 0, NULL, $3)
"""


DELETE_RANKS = "DELETE FROM briefing_ranks WHERE campaign_id = $1 AND slot = $2"


# Replicas computing the same briefing take turns (both compute the same from history).
LOCK_RANKS = """
SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2::timestamptz::text, 7301120))
"""


# What a briefing's ranking depends on: every transaction that changed the campaign's day
# rollups at or before the briefing's hour (`history_reach`, aggregator migrations 021 and
# 022: a late report from before it, a withdrawn citizen's winner, a re-plan), and every
# admin change (targets, the policy). Counted transactions, not counted events: a citizen's
# earlier event reported late moves the count from one unit's day to another's, and the
# events of those days sum to what they did while the ranking moved; the count of
# transactions only grows. To the hour (the briefing day's writes less those of its hours
# after the briefing's): a report of that day in a later hour leaves the ranking, so that
# the level is not ranked again on every pass of that day (the national level of 10,236
# communes takes a few seconds); one in the briefing's own hour, after it, still moves it.
HISTORY_VERSION = f"""
SELECT coalesce((SELECT sum(r.writes - CASE WHEN r.day = {local_day("$2::timestamptz")}
                        THEN coalesce((SELECT sum(h) FROM unnest(
                                 r.hours[{local_hour("$2::timestamptz")} + 2:]) AS h), 0)
                        ELSE 0 END)
                 FROM campaigns c
                 JOIN history_reach r ON r.campaign_id = c.id
                 WHERE c.id = $1 AND r.day <= {local_day("$2::timestamptz")}), 0)
       || ':' || coalesce((SELECT max(id) FROM audit_log), 0)
"""


async def ranks(conn: Connection, campaign_id: str, slot: datetime) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_RANKS, campaign_id, slot))


async def history_version(conn: Connection, campaign_id: str, slot: datetime) -> str:
    """The version of what the leaderboard as of a briefing at `slot` depends on."""
    version: str = await conn.fetchval(HISTORY_VERSION, campaign_id, slot)
    return version


async def replace_ranks(
    conn: Connection,
    campaign_id: str,
    slot: datetime,
    version: str,
    rows: Sequence[tuple[str, str, int, int, float | None]],
) -> None:
    """Store a briefing's bottom ranks (indicator, unit, rank, of_units, pct), replacing
    what an older version of history gave; replicas take turns."""
    async with conn.transaction():
        await conn.execute(LOCK_RANKS, campaign_id, slot)
        await conn.execute(DELETE_RANKS, campaign_id, slot)
        await conn.execute(RANKS_STORED, campaign_id, slot, version)
        await insert_ranks(conn, campaign_id, slot, rows)


async def insert_ranks(
    conn: Connection,
    campaign_id: str,
    slot: datetime,
    rows: Sequence[tuple[str, str, int, int, float | None]],
) -> None:
    """(indicator, unit, rank, of_units, pct) of the bottom of one briefing."""
    await conn.execute(
        INSERT_RANKS,
        campaign_id,
        slot,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
    )
