"""Counters recomputed from the stored events: the rebuild's bookkeeping here, the rules
themselves (`recount`, `RECOUNT_SUBJECTS`) in `tiendo.counting`."""

from datetime import datetime

from tiendo.counting import recount
from tiendo.counting.batch import COUNTERS_LOCK_KEY
from tiendo.counting.rules import RECOUNT_SUBJECTS
from tiendo.database import Connection

__all__ = [
    "DELETE_EVENTS_FROM",
    "LOCK_REBUILD",
    "RECOUNT_SUBJECTS",
    "UNLOCK_REBUILD",
    "begin_recount",
    "end_recount",
    "recount",
]

# The session-wide form of the apply lock: a running aggregator waits out the rebuild.
LOCK_REBUILD = f"SELECT pg_advisory_lock({COUNTERS_LOCK_KEY})"

UNLOCK_REBUILD = f"SELECT pg_advisory_unlock({COUNTERS_LOCK_KEY})"

DELETE_EVENTS_FROM = """
DELETE FROM events e
USING unnest($1::int[], $2::bigint[]) AS f (partition, first_offset)
WHERE e.kafka_partition = f.partition AND e.kafka_offset >= f.first_offset
"""

# One rebuild at a time (the lock above): a row left by one that died is replaced.
BEGIN_RECOUNT = """
INSERT INTO recounts (started_at, actor, group_id, topic, partitions, from_offsets,
                      until_offsets)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (only_one) DO UPDATE
SET started_at = EXCLUDED.started_at, actor = EXCLUDED.actor, group_id = EXCLUDED.group_id,
    topic = EXCLUDED.topic, partitions = EXCLUDED.partitions,
    from_offsets = EXCLUDED.from_offsets, until_offsets = EXCLUDED.until_offsets
"""

END_RECOUNT = "DELETE FROM recounts"


async def begin_recount(
    conn: Connection,
    *,
    started_at: datetime,
    actor: str,
    group_id: str,
    topic: str,
    replays: dict[int, tuple[int, int]],
) -> None:
    """Mark a rebuild in progress, in the transaction that resets the counters: `replays`
    maps each partition to the offsets it replays from and up to (exclusive); readers see
    it until the group's stored offsets reach the ends (`tiendo.board.recounting`)."""
    partitions = sorted(replays)
    await conn.execute(
        BEGIN_RECOUNT,
        started_at,
        actor,
        group_id,
        topic,
        partitions,
        [replays[p][0] for p in partitions],
        [replays[p][1] for p in partitions],
    )


async def end_recount(conn: Connection) -> None:
    await conn.execute(END_RECOUNT)
