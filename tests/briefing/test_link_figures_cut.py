"""The chief's link page writes pct as the briefing pack and the leaderboard exports do: cut
down to the digits shown, never rounded up (`tiendo.figure_digits.cut`). Until 7 December
2026 the page rounded: a ward one short of a target of 13,433 (99.993 %) read "100,0 %"
on the chief's phone while the pack on the meeting's table read 99,9 %."""

import re
from datetime import timedelta

import asyncpg
import httpx

from services.aggregator import admin
from services.aggregator.admin import TargetIn
from tests.support.notifier import Harness, delivered_link, progress


async def test_the_link_page_cuts_pct_to_the_digit_shown(harness: Harness) -> None:
    h = harness
    conn = await asyncpg.connect(h.database)
    try:
        async with conn.transaction():
            await admin.upsert_targets(
                conn, "c1", [TargetIn(unit="00004", indicator="cccd_collected", target=13_433)], "t"
            )
    finally:
        await conn.close()
    path = await delivered_link(h)  # nobody reported: every ward behind
    # then the ward reports one short of its target
    await h.feed.send(progress("00004", 13_432, at=h.clock.now() - timedelta(minutes=1)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=h.app), base_url="http://test"
    ) as web:
        page = (await web.get(path)).text
    # the ward's other indicator is on the page too, at 0 of 1,000
    pct = re.findall(r"<b>13\.432 / 13\.433</b>\s*<span>Tỷ lệ</span><b>([^<]*)</b>", page)
    assert pct == ["99,9 %"]
