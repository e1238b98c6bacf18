"""Where the consumer stands: Kafka offsets stored with the counters, the events stored so
far, and dead letters."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

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
INSERT INTO dead_letters (topic, partition, kafka_offset, event_id, reason, payload, unit,
                          indicator)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
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


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event set aside: where it stood in the topic, why, and its bytes (its unit and
    indicator when it could be decoded)."""

    partition: int
    offset: int
    event_id: str | None
    reason: str
    payload: bytes
    unit: str | None = None
    indicator: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredDeadLetter(DeadLetter):
    """A dead letter as the table holds it: when it was set aside and re-driven."""

    created_at: datetime
    redriven_at: datetime | None


async def save_dead_letter(conn: Connection, topic: str, d: DeadLetter) -> None:
    await conn.execute(
        INSERT_DEAD_LETTER,
        topic,
        d.partition,
        d.offset,
        d.event_id,
        d.reason,
        d.payload,
        d.unit,
        d.indicator,
    )


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


async def dead_letters(
    conn: Connection, *, include_redriven: bool, limit: int
) -> list[StoredDeadLetter]:
    """The oldest first; those already re-driven only if asked."""
    return [
        StoredDeadLetter(
            r["partition"],
            r["kafka_offset"],
            r["event_id"],
            r["reason"],
            bytes(r["payload"]),
            r["unit"],
            r["indicator"],
            created_at=r["created_at"],
            redriven_at=r["redriven_at"],
        )
        for r in await conn.fetch(SELECT_DEAD_LETTERS, include_redriven, limit)
    ]


async def mark_redriven(conn: Connection, topic: str, letters: Sequence[DeadLetter]) -> None:
    await conn.executemany(MARK_REDRIVEN, [(topic, d.partition, d.offset) for d in letters])


async def set_offsets(
    conn: Connection, group_id: str, topic: str, next_offsets: dict[int, int]
) -> None:
    """Move the stored position to exactly these offsets (the rebuild rewinds it)."""
    await conn.executemany(
        SET_OFFSET, [(group_id, topic, p, o) for p, o in sorted(next_offsets.items())]
    )


async def count_events(conn: Connection) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM events")
    return count


async def clear_history(conn: Connection) -> None:
    """Forget every stored event (those held for their moment too) and what was derived
    from them alone (a full rebuild)."""
    await conn.execute("TRUNCATE events, subjects, events_ahead")


COUNT_RECENT_UNSTORABLE = """
SELECT count(*) FROM dead_letters
WHERE reason LIKE 'cannot be stored:%' AND created_at > now() - make_interval(secs => $1)
"""


async def recent_unstorable(conn: Connection, within_seconds: float) -> int:
    """Dead letters set aside as `cannot be stored` in the last `within_seconds`, by every
    replica and every run (`Applier.apply_isolating`'s cap)."""
    return int(await conn.fetchval(COUNT_RECENT_UNSTORABLE, within_seconds))
