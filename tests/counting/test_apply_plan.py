"""A live batch looks up the counters of its keys; it never reads every counter. The
planner knows the apply's staging tables only by their pages: when every key's row was
updated after its insert, the keys' table was twice its size, and on the 10 M dataset
(88,000 counters) the spread of a 1,000-event batch read the whole of `progress` (about
40 of its 100 ms) instead of looking up 1,000 rows. Here the counters of another campaign
make `progress` a table of a few hundred thousand rows, as a national deployment's is, and
a batch of a thousand keys must leave it unread as a whole (it did not before the keys'
rows were written once), with the rows it counted right."""

from datetime import UTC, datetime, timedelta

import asyncpg

from services.aggregator.admin import UnitIn
from tests.support.world import build_world
from tiendo import counting
from tiendo.counting import batch
from tiendo.event import Event, Kind

STARTS = datetime(2026, 11, 1, tzinfo=UTC)
WARDS = [f"{i:05d}" for i in range(1, 1001)]
UNITS = [
    UnitIn(code="01", name="Tỉnh", level=1),
    *(UnitIn(code=f"{d:03d}", name=f"Huyện {d}", level=2, parent_code="01") for d in range(10)),
    *(
        UnitIn(code=w, name=f"Xã {w}", level=3, parent_code=f"{i % 10:03d}")
        for i, w in enumerate(WARDS)
    ),
]
OTHER_COUNTERS = 400_000


async def test_a_live_batch_looks_up_its_keys_counters_and_reads_no_table_whole(
    database: str,
) -> None:
    await build_world(database, starts_at=STARTS, units=UNITS, targets=dict.fromkeys(WARDS, 100))
    conn = await asyncpg.connect(database)
    try:
        # another campaign's counters, as many as a national campaign's eight indicators
        await build_world(
            database, starts_at=STARTS, units=UNITS, campaign_id="c2", targets={"00001": 1}
        )
        await conn.execute(
            """INSERT INTO progress (campaign_id, unit, indicator)
               SELECT 'c2', 'x' || i, 'cccd_collected' FROM generate_series(1, $1) i""",
            OTHER_COUNTERS,
        )
        await conn.execute("ANALYZE progress")
        at = STARTS + timedelta(days=3)
        events = [
            Event(
                f"e{i}", w, "cccd_collected", Kind.INCREMENT, 1 + i % 3, at + timedelta(seconds=i)
            )
            for i, w in enumerate(WARDS)
        ]
        await counting.prepare(conn)
        async with conn.transaction():
            await counting.stage(conn, [batch.staging_row(e, None, None) for e in events])
            assert await counting.take_unappliable(conn) == []
            outcome = await counting.apply(conn, distinct_ids=True)
            scans = {
                r[0]: r[1]
                for r in await conn.fetch(
                    "SELECT relname, seq_scan FROM pg_stat_xact_user_tables"
                    " WHERE relname = 'progress'"
                )
            }
        assert outcome.new_events == len(events)
        assert scans == {"progress": 0}
        values = {
            r[0]: r[1]
            for r in await conn.fetch(
                "SELECT unit, value FROM progress WHERE campaign_id = 'c1' AND unit = ANY ($1)",
                ["01", "000", "00001", "00010"],
            )
        }
        # the i-th ward (from 0) counts 1 + i % 3, and district "000" holds i = 0, 10, 20, ...
        assert values["00001"] == 1
        assert values["00010"] == 1 + 9 % 3
        assert values["000"] == sum(1 + i % 3 for i in range(0, 1000, 10))
        assert values["01"] == sum(1 + i % 3 for i in range(1000))
    finally:
        await conn.close()
