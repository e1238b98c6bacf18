"""Events held until their moment (`services.aggregator.ahead`): stored with a batch,
taken back once the clock has reached them."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tiendo.counting.batch import STAGING_COLUMNS
from tiendo.database import Connection

_COLUMNS = ", ".join(STAGING_COLUMNS)

HOLD = f"""
INSERT INTO events_ahead ({_COLUMNS}, payload)
VALUES ({", ".join(f"${i}" for i in range(1, len(STAGING_COLUMNS) + 2))})
ON CONFLICT DO NOTHING
"""

# The earliest first, a bounded batch; another replica's release skips what this one holds.
TAKE_DUE = f"""
WITH due AS (
    SELECT kafka_partition, kafka_offset FROM events_ahead
    WHERE occurred_at <= $1
    ORDER BY occurred_at, kafka_partition, kafka_offset
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM events_ahead a USING due d
WHERE a.kafka_partition = d.kafka_partition AND a.kafka_offset = d.kafka_offset
RETURNING {", ".join(f"a.{c}" for c in STAGING_COLUMNS)}, a.payload
"""

COUNT_HELD = "SELECT count(*) FROM events_ahead"

# A rebuild replays these positions: what they held is consumed again.
FORGET_FROM = """
DELETE FROM events_ahead a
USING unnest($1::int[], $2::bigint[]) AS f (partition, first_offset)
WHERE a.kafka_partition = f.partition AND a.kafka_offset >= f.first_offset
"""


@dataclass(frozen=True, slots=True)
class Held:
    """A held event: its staging row (`batch.STAGING_COLUMNS`) and its record's bytes."""

    row: tuple[Any, ...]
    payload: bytes


async def hold(conn: Connection, held: Sequence[Held]) -> None:
    await conn.executemany(HOLD, [(*h.row, h.payload) for h in held])


async def take_due(conn: Connection, now: datetime, limit: int) -> list[Held]:
    """Remove and return up to `limit` held events whose moment is at or before `now`; the
    caller applies them in the same transaction."""
    width = len(STAGING_COLUMNS)
    return [Held(tuple(r[:width]), bytes(r[width])) for r in await conn.fetch(TAKE_DUE, now, limit)]


async def count_held(conn: Connection) -> int:
    return int(await conn.fetchval(COUNT_HELD))
