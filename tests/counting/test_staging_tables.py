"""A connection's staging tables are created once, and again only when it lost them: a
transaction that created them and rolled back drops them, and the next batch on that
connection must still apply. A connection that has them does not ask for each again (six
`CREATE ... IF NOT EXISTS`, each a notice: 4-6 ms of every `apply_events` batch)."""

from datetime import UTC, datetime, timedelta

import asyncpg

from services.aggregator.admin import UnitIn
from tests.support.world import build_world
from tiendo import counting
from tiendo.event import Event, Kind

STARTS = datetime(2026, 11, 1, tzinfo=UTC)
UNITS = [
    UnitIn(code="01", name="Tỉnh", level=1),
    UnitIn(code="011", name="Xã", level=2, parent_code="01"),
]


def _event(n: int) -> Event:
    return Event(f"e{n}", "011", "cccd_collected", Kind.INCREMENT, n, STARTS + timedelta(hours=n))


async def test_staging_tables_are_made_once_and_again_when_lost(database: str) -> None:
    await build_world(database, starts_at=STARTS, units=UNITS, targets={"011": 100})
    conn = await asyncpg.connect(database)
    notices: list[str] = []
    conn.add_log_listener(lambda _conn, message: notices.append(str(message)))
    try:
        # made inside a transaction that rolls back: gone with it
        tx = conn.transaction()
        await tx.start()
        await counting.prepare(conn)
        await tx.rollback()
        assert not await conn.fetchval("SELECT to_regclass('pg_temp.batch_in') IS NOT NULL")
        assert (await counting.apply_events(conn, [_event(1)])).new_events == 1
        # a connection that has them is not asked to make them again
        notices.clear()
        for n in (2, 3):
            assert (await counting.apply_events(conn, [_event(n)])).new_events == 1
        assert notices == []
        value = await conn.fetchval(
            "SELECT value FROM progress WHERE unit = '011' AND indicator = 'cccd_collected'"
        )
        assert value == 1 + 2 + 3
    finally:
        await conn.close()
