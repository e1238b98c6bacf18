"""Dead letters: events that passed ingest but cannot be applied (e.g. their unit was
deleted in between). They wait in the dead-letter topic and table until the cause is fixed,
then are re-driven into `progress-events`, where they are applied like any event."""

import asyncio
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaProducer

from services.aggregator.repository import positions as position_sql
from tiendo.database import Connection
from tiendo.event import UndecodableEvent, decode


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int
    offset: int
    event_id: str | None
    reason: str
    created_at: datetime
    redriven_at: datetime | None
    payload: bytes


async def pending(
    conn: Connection, *, include_redriven: bool = False, limit: int = 1000
) -> list[DeadLetter]:
    rows = await conn.fetch(position_sql.SELECT_DEAD_LETTERS, include_redriven, limit)
    return [
        DeadLetter(
            r["partition"],
            r["kafka_offset"],
            r["event_id"],
            r["reason"],
            r["created_at"],
            r["redriven_at"],
            bytes(r["payload"]),
        )
        for r in rows
    ]


async def redrive(
    conn: Connection, producer: AIOKafkaProducer, topic: str, letters: list[DeadLetter]
) -> tuple[int, list[str]]:
    """Publish the letters again (acknowledged) and mark them; undecodable ones are skipped
    since no fix can make them applicable. Returns (re-driven, reasons skipped)."""
    sent: list[DeadLetter] = []
    skipped: list[str] = []
    futures = []
    for letter in letters:
        try:
            event = decode(letter.payload)
        except UndecodableEvent as exc:
            skipped.append(f"{letter.partition}:{letter.offset} {exc}")
            continue
        futures.append(await producer.send(topic, letter.payload, key=event.unit.encode()))
        sent.append(letter)
    await asyncio.gather(*futures)
    await conn.executemany(
        position_sql.MARK_REDRIVEN, [(topic, d.partition, d.offset) for d in sent]
    )
    return len(sent), skipped
