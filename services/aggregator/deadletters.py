"""Dead letters: events that passed ingest but cannot be applied (e.g. their unit was
deleted in between). They wait in the dead-letter topic and table until the cause is fixed,
then are re-driven into `progress-events`, where they are applied like any event."""

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from services.aggregator.repository import positions as position_sql
from services.aggregator.repository.positions import DeadLetter, StoredDeadLetter
from tiendo.counting.batch import CONFLICT
from tiendo.database import Connection
from tiendo.event import UndecodableEvent, decode


async def pending(
    conn: Connection, *, include_redriven: bool = False, limit: int = 1000
) -> list[StoredDeadLetter]:
    return await position_sql.dead_letters(conn, include_redriven=include_redriven, limit=limit)


async def redrive(
    conn: Connection, producer: AIOKafkaProducer, topic: str, letters: Sequence[DeadLetter]
) -> tuple[int, list[str]]:
    """Publish the letters again (acknowledged) and mark them; undecodable ones and
    conflicts are skipped since no fix can make them applicable (a conflict's event_id is
    stored with other content for good). Returns (re-driven, reasons skipped)."""
    sent: list[DeadLetter] = []
    skipped: list[str] = []
    futures = []
    for letter in letters:
        if letter.reason == CONFLICT:
            skipped.append(f"{letter.partition}:{letter.offset} {CONFLICT}")
            continue
        try:
            event = decode(letter.payload)
        except UndecodableEvent as exc:
            skipped.append(f"{letter.partition}:{letter.offset} {exc}")
            continue
        futures.append(await producer.send(topic, letter.payload, key=event.unit.encode()))
        sent.append(letter)
    await asyncio.gather(*futures)
    await position_sql.mark_redriven(conn, topic, sent)
    return len(sent), skipped
