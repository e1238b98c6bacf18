"""What a briefing pack weighs and costs: the demo's 579 wards, and the 126 wards of Hà
Nội's nine inner districts (001-009) as a campaign of their own. Prints sizes and times
(docs/briefing.md quotes them); asserts only what the pack holds, never a time."""

import time

import asyncpg
import pytest

from devtools.demo import seed
from services.aggregator import admin
from services.aggregator.admin import TargetIn
from services.notifier.briefing.pack import briefing_pack
from services.notifier.settings import NotifierSettings
from tests.briefing.demo import BRIEFING, CAMPAIGN, NOW, seed_demo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
INNER = {"001", "002", "003", "004", "005", "006", "007", "008", "009"}


async def test_the_pack_of_126_and_of_579_wards(database: str) -> None:
    await seed_demo(database)
    wards = seed.hanoi_wards()
    inner = {w.code for w in wards if w.parent in INNER}
    assert len(inner) == 126
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            await admin.upsert_campaign(conn, "ml01-inner", seed.demo_campaign(NOW), "test")
            await admin.upsert_targets(
                conn,
                "ml01-inner",
                [
                    TargetIn(unit=u, indicator=i, target=t)
                    for (u, i), t in seed.ward_targets(wards).items()
                    if u in inner
                ],
                "test",
            )
        settings = NotifierSettings(database_url=database)
        for campaign, units in (("ml01-inner", 126), (CAMPAIGN, 579)):
            for fmt in ("html", "pdf", "xlsx"):
                started = time.perf_counter()
                document = await briefing_pack(
                    conn,
                    settings,
                    campaign,
                    at=BRIEFING,
                    now=NOW,
                    level=3,
                    language=None,
                    fmt=fmt,
                )
                took = time.perf_counter() - started
                if fmt == "html":
                    assert document.body.count(b'<tr class="') == 2 * units
                print(  # noqa: T201
                    f"\n{units} wards {fmt}: {len(document.body):,} bytes in {took:.1f} s"
                )
    finally:
        await conn.close()
