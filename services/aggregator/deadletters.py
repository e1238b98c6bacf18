"""Dead letters: events that passed ingest but cannot be applied (e.g. their unit was
deleted in between). They wait in the dead-letter topic and table until the cause is fixed,
then are re-driven into `progress-events`, where they are applied like any event."""

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from services.aggregator.prepared import UNSTORABLE
from services.aggregator.repository import positions as position_sql
from services.aggregator.repository.positions import DeadLetter, StoredDeadLetter
from tiendo import audit
from tiendo.counting import Unappliable
from tiendo.counting.batch import CONFLICT, SPLIT
from tiendo.database import Connection
from tiendo.event import UndecodableEvent, decode


def from_unappliable(u: Unappliable, payloads: dict[tuple[int, int], bytes]) -> DeadLetter:
    return DeadLetter(
        u.partition,
        u.offset,
        u.event_id,
        u.reason,
        payloads[u.partition, u.offset],
        u.unit,
        u.indicator,
    )


def dead_letter_kind(d: DeadLetter) -> str:
    """A bounded label for metrics."""
    if d.event_id is None:
        return "undecodable"
    if d.reason == CONFLICT:
        return CONFLICT
    if d.reason.startswith(UNSTORABLE):
        return "unstorable"
    if d.reason.startswith("unknown unit"):
        return "unknown_unit"
    return "split_unit" if SPLIT in d.reason else "unknown_indicator"


async def pending(
    conn: Connection, *, include_redriven: bool = False, limit: int = 1000
) -> list[StoredDeadLetter]:
    return await position_sql.dead_letters(conn, include_redriven=include_redriven, limit=limit)


async def redrive(
    conn: Connection,
    producer: AIOKafkaProducer,
    topic: str,
    letters: Sequence[DeadLetter],
    *,
    actor: str | None = None,
) -> tuple[int, list[str]]:
    """Publish the letters again (acknowledged) and mark them; undecodable ones and
    conflicts are skipped since no fix can make them applicable (a conflict's event_id is
    stored with other content for good). Returns (re-driven, reasons skipped).

    Re-driven events change the counters: the audit log records who (`actor`, default the
    OS user) re-drove which letters and skipped which, with the marks (in the caller's
    transaction, if any)."""
    sent: list[DeadLetter] = []
    skipped: list[tuple[DeadLetter, str]] = []
    futures = []
    for letter in letters:
        if letter.reason == CONFLICT:
            skipped.append((letter, CONFLICT))
            continue
        try:
            event = decode(letter.payload)
        except UndecodableEvent as exc:
            skipped.append((letter, str(exc)))
            continue
        futures.append(await producer.send(topic, letter.payload, key=event.unit.encode()))
        sent.append(letter)
    await asyncio.gather(*futures)
    await position_sql.mark_redriven(conn, topic, sent)
    if letters:
        await audit.record(
            conn,
            actor=actor or audit.default_actor(),
            action="deadletters.redrive",
            subject=topic,
            details={
                # a letter by `partition:offset`, as `tiendo aggregator dead-letters` lists it
                "sent": [{"letter": _at(d), "event_id": d.event_id} for d in sent],
                "skipped": [
                    {"letter": _at(d), "event_id": d.event_id, "reason": why} for d, why in skipped
                ],
            },
        )
    return len(sent), [f"{_at(d)} {why}" for d, why in skipped]


def _at(letter: DeadLetter) -> str:
    return f"{letter.partition}:{letter.offset}"
