"""The briefing pack writes pct and pace as the leaderboard exports do: cut down to the digits
shown, never rounded up (`tiendo.figure_digits.cut`), so a figure stays on its side of the
line its status is read against. Until 6 December 2026 the pack rounded: a ward one short of
a target of 13,433 read 100.0 beside a status that is not "done", and a pace of 0.8999 read
0.900 (0,90 on the page) beside "behind" at the threshold of 0.9."""

import io
from datetime import UTC, datetime, timedelta

import asyncpg
from openpyxl import load_workbook

from services.notifier.briefing.pack import Format, briefing_pack
from services.notifier.settings import NotifierSettings
from tests.support.notifier import Feed, progress
from tests.support.world import build_world

STARTS = datetime(2023, 5, 10, 3, tzinfo=UTC)
AT = STARTS + timedelta(days=10)  # a fifth of the 50 days: the plan is at 20 %


async def test_the_pack_cuts_pct_and_pace_to_the_digits_shown(database: str) -> None:
    await build_world(
        database, starts_at=STARTS, targets={"00004": 13_433, "00007": 50_000, "00010": 1000}
    )
    # one short of its target; and 8,999 where the plan is at 10,000: pace 0.8999
    await Feed(database).send(
        progress("00004", 13_432, at=AT - timedelta(hours=1)),
        progress("00007", 8_999, at=AT - timedelta(hours=1)),
    )
    settings = NotifierSettings(database_url=database)
    conn = await asyncpg.connect(database)
    try:

        async def pack(fmt: Format) -> bytes:
            document = await briefing_pack(
                conn, settings, "c1", at=AT, now=AT, level=3, language="vi", fmt=fmt
            )
            return document.body

        book = load_workbook(io.BytesIO(await pack("xlsx")))
        ranking = book.worksheets[0]
        header = [c.value for c in ranking[1]]
        rows = {r[header.index("code")]: r for r in ranking.iter_rows(min_row=2, values_only=True)}
        pct, pace = 8, 9  # the ranking sheet's columns (formats.xlsx)
        assert rows["00004"][pct] == 99.9
        assert rows["00007"][pace] == 0.899
        page = (await pack("html")).decode()
        assert "99,9 %" in page
        assert "100,0 %" not in page
        assert "0,89" in page
        assert "0,90" not in page
    finally:
        await conn.close()
