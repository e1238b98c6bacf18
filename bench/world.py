"""The benchmark's database: migrations and the Hà Nội demo campaign, as in `make dev`."""

from datetime import UTC, datetime

import asyncpg

from devtools.demo import seed
from services.aggregator import admin
from services.aggregator.admin import CampaignIn
from services.schema import migrate_all


async def seed_world(conn: asyncpg.Connection) -> CampaignIn:
    """Migrate, then load Hà Nội's units, the demo campaign and its ward targets."""
    await migrate_all(conn)
    # the database's search path (set by the migrations) reaches new sessions only
    await conn.execute("SET search_path = public, ingest, aggregator, notifier")
    campaign = seed.demo_campaign(datetime.now(UTC))
    async with conn.transaction():
        await admin.upsert_units(conn, seed.hanoi_units(), "bench")
        await admin.upsert_campaign(conn, seed.CAMPAIGN_ID, campaign, "bench")
        await admin.upsert_targets(
            conn, seed.CAMPAIGN_ID, seed.demo_targets(seed.hanoi_wards()), "bench"
        )
    return campaign
