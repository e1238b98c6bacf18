"""A fetched batch decoded for its transaction, and its halves: what the apply splits a
batch into when one of its records cannot be stored (`Applier.apply_isolating`)."""

from dataclasses import dataclass
from typing import Any

import asyncpg

from services.aggregator import ahead
from services.aggregator.repository.positions import DeadLetter

# What a transaction fails with when a record's own content cannot be stored in a way the
# contract's rules (`tiendo.events.rules`) did not foresee: SQL classes 22 (data
# exception: a sum past bigint, a text PostgreSQL refuses) and 23 (a constraint). Nothing
# else is taken for a record's fault: a lost connection, a deadlock or a missing table is
# the apply's, and the consumer restarts as before.
CANNOT_STORE = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


@dataclass(slots=True)
class Prepared:
    """A fetched batch decoded into staging rows, ready for its transaction."""

    records: int
    rows: list[tuple[Any, ...]]
    payloads: dict[tuple[int, int], bytes]
    dead: list[DeadLetter]
    next_offsets: dict[int, int]

    def halves(self) -> "tuple[Prepared, Prepared] | None":
        """The batch as two, in offset order within each partition: the first half's
        records (by partition, then offset), and the rest; None for a single record.
        Applied one after the other they store what the whole would, the first half's
        next offsets stopping where the second half's records of a partition begin."""
        items: list[tuple[int, int, tuple[Any, ...] | DeadLetter]] = [
            (r[ahead.PARTITION], r[ahead.OFFSET], r) for r in self.rows
        ]
        items += [(d.partition, d.offset, d) for d in self.dead]
        if len(items) < 2:
            return None
        items.sort(key=lambda i: (i[0], i[1]))
        cut = len(items) // 2
        first, second = items[:cut], items[cut:]
        later: dict[int, int] = {}
        for p, o, _ in second:
            later.setdefault(p, o)
        first_next = {p: later.get(p, self.next_offsets[p]) for p, _, _ in first}
        second_next = {p: o for p, o in self.next_offsets.items() if p not in first_next}
        second_next |= {p: self.next_offsets[p] for p in later}
        return self._part(first, first_next), self._part(second, second_next)

    def _part(
        self,
        items: list[tuple[int, int, tuple[Any, ...] | DeadLetter]],
        next_offsets: dict[int, int],
    ) -> "Prepared":
        rows = [i for _, _, i in items if isinstance(i, tuple)]
        dead = [i for _, _, i in items if isinstance(i, DeadLetter)]
        payloads = {(p, o): self.payloads[p, o] for p, o, i in items if isinstance(i, tuple)}
        return Prepared(len(items), rows, payloads, dead, next_offsets)

    def unstorable(self, error: Exception) -> "Prepared | None":
        """A single event's record as a dead letter, with the offsets past it: what is
        applied in its place once it failed alone. None if the record is not one event."""
        if len(self.rows) != 1 or self.dead:
            return None
        row = self.rows[0]
        letter = unstorable(row, self.payloads[row[ahead.PARTITION], row[ahead.OFFSET]], error)
        return Prepared(1, [], {}, [letter], dict(self.next_offsets))


def unstorable(row: tuple[Any, ...], payload: bytes, error: Exception) -> DeadLetter:
    """The dead letter of a staged event PostgreSQL refused alone with `error`."""
    # (the class of error, never PostgreSQL's message: that may repeat the value)
    kind = f"SQLSTATE {getattr(error, 'sqlstate', '?')} ({type(error).__name__})"
    p, o = row[ahead.PARTITION], row[ahead.OFFSET]
    return DeadLetter(p, o, row[0], f"{UNSTORABLE}: {kind}", payload, row[1], row[2])


# The reason's first words for a record that failed alone (`Prepared.unstorable`).
UNSTORABLE = "cannot be stored"
