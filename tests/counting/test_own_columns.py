"""The apply keeps each key's own columns (latest snapshot, increments after it, last counted
event) exactly as the recount computes them from the stored events, whatever the order
and batching of the events. Live values follow from these columns only through later
batches (a key's value moves by its own value's change, read from them when a snapshot
moves it), so a column the apply left wrong shows only after such a batch; this test
compares the columns themselves after every batch."""

import random
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.support.world import TREE, build_world
from tiendo import counting
from tiendo.event import Event, Kind

STARTS = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 6
CCCD, EID = "cccd_collected", "eid_activated_l2"
OWN_COLUMNS = """
SELECT unit, indicator, snap_at, snap_event_id, snap_value, incr_after, own_last_event_at
FROM progress WHERE campaign_id = 'c1' ORDER BY unit, indicator
"""


def _events(rng: random.Random, n: int) -> list[Event]:
    """Snapshots among increments on the same keys (a district's own too), citizens seen
    twice, events a little outside the window, in no particular order."""
    units = [u.code for u in TREE]
    out = []
    for i in range(n):
        at = STARTS + timedelta(hours=rng.randrange(-6, DAYS * 24 + 6))
        unit, roll = rng.choice(units), rng.random()
        if roll < 0.2:
            out.append(Event(f"s{i}", unit, CCCD, Kind.SNAPSHOT, rng.randint(0, 80), at))
        elif roll < 0.4:
            citizen = f"{rng.randrange(12):064x}"
            out.append(Event(f"c{i}", unit, EID, Kind.INCREMENT, 1, at, subject=citizen))
        else:
            value = rng.choice((1, 1, 2, 5, -1))
            out.append(Event(f"i{i}", unit, rng.choice((CCCD, EID)), Kind.INCREMENT, value, at))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_applied_own_columns_equal_their_recount(database: str, seed: int) -> None:
    await build_world(
        database,
        starts_at=STARTS,
        days=DAYS,
        indicators=(CCCD, EID),
        targets={u.code: 50 for u in TREE},
    )
    rng = random.Random(seed)
    events = _events(rng, 240)
    conn = await asyncpg.connect(database)
    try:
        while events:
            size = rng.choice((1, 3, 10, 40))
            batch, events = events[:size], events[size:]
            # a few deliveries again, in this batch or a later one
            batch += rng.sample(batch, k=min(len(batch), rng.randrange(3)))
            await counting.apply_events(conn, batch)
            applied = [tuple(r) for r in await conn.fetch(OWN_COLUMNS)]
            tx = conn.transaction()
            await tx.start()
            await counting.recount(conn, "c1")
            recounted = [tuple(r) for r in await conn.fetch(OWN_COLUMNS)]
            await tx.rollback()
            assert applied == recounted
    finally:
        await conn.close()
