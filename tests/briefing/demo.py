"""The demo campaign of `make dev` (Hà Nội, 579 wards, two indicators) in a test's database:
the same tree, targets and backfilled reports, counted by the aggregator's own apply."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from devtools.demo import seed
from devtools.demo.traffic import backfill_events
from services.aggregator import admin
from tiendo.counting import apply_events
from tiendo.event import Event, Kind

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
# As on the field case's calendar: the campaign starts 10 May 2023 (local midnight), and the
# briefing is Monday 29 May 2023 at 08:00, day 19 of 51.
NOW = datetime(2023, 6, 1, 10, 0, tzinfo=TZ)
BRIEFING = datetime(2023, 5, 29, 8, 0, tzinfo=TZ)
PREVIOUS = BRIEFING - timedelta(days=7)
CAMPAIGN = seed.CAMPAIGN_ID
BATCH = 5000


async def seed_demo(dsn: str, until: datetime = BRIEFING) -> None:
    """Tree, campaign, targets, and every ward's reports from the start up to `until`."""
    wards = seed.hanoi_wards()
    campaign = seed.demo_campaign(NOW)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await admin.upsert_units(conn, seed.hanoi_units(), "test")
            await admin.upsert_campaign(conn, CAMPAIGN, campaign, "test")
            await admin.upsert_targets(conn, CAMPAIGN, seed.demo_targets(wards), "test")
        events = [
            Event(
                event_id=str(e["event_id"]),
                unit=str(e["unit"]),
                indicator=str(e["indicator"]),
                kind=Kind.INCREMENT,
                value=int(e["value"]),
                occurred_at=datetime.fromisoformat(str(e["occurred_at"])),
            )
            for e in backfill_events(wards, campaign.starts_at, campaign.deadline, until)
        ]
        for i in range(0, len(events), BATCH):
            await apply_events(conn, events[i : i + BATCH])
        # planner statistics, as a running database has them after a bulk load
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
