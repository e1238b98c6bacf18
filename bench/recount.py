"""Measure the admin recount (docs/admin.md): a campaign created over N stored events.

`python -m bench.recount --events 1000000`: starts its own PostgreSQL (durable settings, as
in production) in a temporary folder, loads the Hà Nội demo world, stores N events of the
benchmark's mix directly in `events` (as the consumer would have), then times
`PUT /v1/campaigns/{id}`'s transaction for a new campaign over the same window and
indicators: re-plan plus the recount of its own values and daily counts. Prints the
figures and writes them to bench/results/recount.json.
"""

import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench import payloads, sized
from bench.world import seed_world
from devtools.localstack import PostgresServer, free_port
from services.aggregator import admin

COLUMNS = ("event_id", "unit", "indicator", "kind", "value", "occurred_at", "subject")


async def main(n: int) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="tiendo-bench-"))
    pg = PostgresServer(folder / "pg", free_port())
    pg.start()
    try:
        conn = await asyncpg.connect(pg.create_database("tiendo"))
        campaign = await seed_world(conn)
        rows = [
            (e.event_id, e.unit, e.indicator, e.kind.value, e.value, e.occurred_at, e.subject)
            for e in payloads.events(n, starts_at=campaign.starts_at)
        ]
        await conn.copy_records_to_table("events", records=rows, columns=COLUMNS)
        await conn.execute("VACUUM ANALYZE events")
        timings = []
        for attempt in range(3):
            started = time.perf_counter()
            async with conn.transaction():
                await admin.upsert_campaign(conn, f"recount-{attempt}", campaign, "bench")
            timings.append(time.perf_counter() - started)
        city = await conn.fetchval(
            "SELECT sum(value) FROM progress WHERE unit = '01' AND campaign_id = 'recount-0'"
        )
        await conn.close()
        return {
            "benchmark": "recount",
            "events": n,
            "campaign_upsert_seconds": [round(t, 2) for t in timings],
            "city_total": int(city or 0),
            "measured_at": datetime.now(UTC).isoformat(),
        }
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sized.run("recount", main)
