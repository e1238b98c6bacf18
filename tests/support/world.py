"""Small, explicit test worlds: a unit tree, a campaign, targets, a token."""

from datetime import datetime, timedelta

import asyncpg

from services.aggregator import admin
from services.aggregator.admin import CampaignIn, TargetIn, UnitIn
from services.ingest import repository as ingest_repository
from services.ingest import tokens

# city 01 → districts 001, 002 → wards 00004, 00007 (in 001) and 00010 (in 002)
TREE = [
    UnitIn(code="01", name="Thành phố Hà Nội", level=1),
    UnitIn(code="001", name="Quận Ba Đình", level=2, parent_code="01"),
    UnitIn(code="002", name="Quận Hoàn Kiếm", level=2, parent_code="01"),
    UnitIn(code="00004", name="Phường Phúc Xá", level=3, parent_code="001"),
    UnitIn(code="00007", name="Phường Trúc Bạch", level=3, parent_code="001"),
    UnitIn(code="00010", name="Phường Hàng Buồm", level=3, parent_code="002"),
]
WARDS = ("00004", "00007", "00010")


async def build_world(
    dsn: str,
    *,
    starts_at: datetime,
    days: int = 50,
    targets: dict[str, int] | None = None,
    indicators: tuple[str, ...] = ("cccd_collected",),
    campaign_id: str = "c1",
    units: list[UnitIn] | None = None,
) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await admin.upsert_units(conn, units or TREE, "test")
            await admin.upsert_campaign(
                conn,
                campaign_id,
                CampaignIn(
                    name="test campaign",
                    starts_at=starts_at,
                    deadline=starts_at + timedelta(days=days),
                    indicators=list(indicators),
                ),
                "test",
            )
            wanted = targets or dict.fromkeys(WARDS, 1000)
            await admin.upsert_targets(
                conn,
                campaign_id,
                [
                    TargetIn(unit=u, indicator=i, target=t)
                    for u, t in wanted.items()
                    for i in indicators
                ],
                "test",
            )
    finally:
        await conn.close()


async def issue_token(
    dsn: str,
    name: str = "upstream",
    units: list[str] | None = None,
    indicators: list[str] | None = None,
) -> str:
    token = tokens.new_token()
    conn = await asyncpg.connect(dsn)
    try:
        await ingest_repository.insert_token(
            conn, name, tokens.digest(token), units or [], indicators or []
        )
    finally:
        await conn.close()
    return token
