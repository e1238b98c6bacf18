"""Where the consumer stands: Kafka offsets stored with the counters, and dead letters."""

from tiendo.database import Connection

UPSERT_OFFSET = """
INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
VALUES ($1, $2, $3, $4)
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET next_offset = greatest(consumer_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()
"""


SELECT_OFFSETS = """
SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2
"""


INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (topic, partition, kafka_offset, event_id, reason, payload)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING
"""


async def save_offsets(
    conn: Connection, group_id: str, topic: str, next_offsets: dict[int, int]
) -> None:
    await conn.executemany(
        UPSERT_OFFSET, [(group_id, topic, p, o) for p, o in sorted(next_offsets.items())]
    )


async def load_offsets(conn: Connection, group_id: str, topic: str) -> dict[int, int]:
    return {
        r["partition"]: r["next_offset"] for r in await conn.fetch(SELECT_OFFSETS, group_id, topic)
    }


async def save_dead_letter(
    conn: Connection,
    topic: str,
    partition: int,
    offset: int,
    event_id: str | None,
    reason: str,
    payload: bytes,
) -> None:
    await conn.execute(INSERT_DEAD_LETTER, topic, partition, offset, event_id, reason, payload)


SELECT_DEAD_LETTERS = """
SELECT * FROM dead_letters
WHERE $1 OR redriven_at IS NULL
ORDER BY created_at, partition, kafka_offset
LIMIT $2
"""


MARK_REDRIVEN = """
UPDATE dead_letters SET redriven_at = now()
WHERE topic = $1 AND partition = $2 AND kafka_offset = $3
"""


SET_OFFSET = """
INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
VALUES ($1, $2, $3, $4)
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET next_offset = EXCLUDED.next_offset, updated_at = now()
"""
