"""The leaderboard's CSV and XLSX exports, what the briefing room opens: moments in the
campaign's time zone (contract §5: days are the campaign's), and the figures a status is
read against (`pct`, `pace`) cut, never rounded up, so that a unit short of its target
never reads 100.0 (services/aggregator/export.py)."""

import csv
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet

from services.aggregator.app import create_app as create_aggregator
from services.aggregator.export import to_csv
from services.aggregator.models import LeaderboardRow, UnitRef
from tests.support.identities import READER
from tests.support.stack import Topics, aggregator_settings, running
from tests.support.world import build_world
from tiendo.clock import ManualClock
from tiendo.counting import apply_events
from tiendo.event import Event, Kind
from tiendo.figure_digits import cut

CCCD = "cccd_collected"
HANOI = ZoneInfo("Asia/Ho_Chi_Minh")
START = datetime(2023, 5, 9, 17, 0, tzinfo=UTC)  # 10 May 00:00 in Hà Nội
NOW = datetime(2023, 5, 20, 20, 0, tzinfo=UTC)  # 21 May 03:00 in Hà Nội
BOARD = "/v1/campaigns/c1/leaderboard"


@asynccontextmanager
async def _aggregator(database: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = aggregator_settings(database, "127.0.0.1:1", Topics.unique(), consume=False)
    async with running(create_aggregator(settings, clock=ManualClock(NOW))) as api:
        api.headers.update(READER)
        yield api


def _csv_rows(r: httpx.Response) -> dict[str, dict[str, str]]:
    assert r.status_code == 200, r.text
    return {row["code"]: row for row in csv.DictReader(io.StringIO(r.content.decode("utf-8-sig")))}


def _sheet(r: httpx.Response) -> Worksheet:
    assert r.status_code == 200, r.text
    sheet = load_workbook(io.BytesIO(r.content)).active
    assert isinstance(sheet, Worksheet)
    return sheet


def _sheet_rows(sheet: Worksheet) -> dict[str, dict[str, object]]:
    header = [str(c.value) for c in sheet[2]]
    rows: list[dict[str, object]] = [
        dict(zip(header, line, strict=True)) for line in sheet.iter_rows(3, values_only=True)
    ]
    return {str(row["Mã đơn vị"]): row for row in rows}


async def test_the_exports_write_the_projected_completion_as_its_local_date(
    database: str,
) -> None:
    await build_world(
        database, starts_at=START, targets={"00004": 1000, "00007": 1000, "00010": 1000}
    )
    conn = await asyncpg.connect(database)
    try:
        # 170 of 1000, 10 a day over the last week: done in 83 days, at 20:00 UTC, which
        # is 03:00 of the next day in Hà Nội
        await apply_events(
            conn,
            [
                Event("a1", "00004", CCCD, Kind.INCREMENT, 100, START + timedelta(hours=1)),
                Event("a2", "00004", CCCD, Kind.INCREMENT, 70, NOW - timedelta(days=2)),
            ],
        )
    finally:
        await conn.close()
    params = {"level": "3", "indicator": CCCD}
    async with _aggregator(database) as api:
        body = (await api.get(BOARD, params=params)).json()
        as_csv = await api.get(BOARD, params={**params, "format": "csv"})
        as_xlsx = await api.get(BOARD, params={**params, "format": "xlsx"})
    (row,) = [r for r in body["rows"] if r["unit"]["code"] == "00004"]
    projected = datetime.fromisoformat(row["projected_completion"])
    local_day = projected.astimezone(HANOI).date().isoformat()
    assert local_day != projected.astimezone(UTC).date().isoformat()  # the case in point
    assert _csv_rows(as_csv)["00004"]["projected_completion"] == local_day
    sheet = _sheet(as_xlsx)
    assert _sheet_rows(sheet)["00004"]["Dự kiến về đích"] == local_day
    # the title's moment is local too, and says whose
    assert str(sheet["A1"].value).endswith("— 2023-05-21 03:00 (Asia/Ho_Chi_Minh)")


async def test_a_unit_short_of_its_target_never_reads_100_in_the_exports(
    database: str,
) -> None:
    await build_world(
        database, starts_at=START, targets={"00004": 13_433, "00007": 1000, "00010": 1000}
    )
    conn = await asyncpg.connect(database)
    try:
        await apply_events(
            conn,
            [
                Event("a", "00004", CCCD, Kind.INCREMENT, 13_432, NOW - timedelta(hours=1)),
                Event("b", "00007", CCCD, Kind.INCREMENT, 1000, NOW - timedelta(hours=1)),
                Event("c", "00010", CCCD, Kind.INCREMENT, 581, NOW - timedelta(hours=1)),
            ],
        )
    finally:
        await conn.close()
    params = {"level": "3", "indicator": CCCD}
    async with _aggregator(database) as api:
        body = (await api.get(BOARD, params=params)).json()
        as_csv = _csv_rows(await api.get(BOARD, params={**params, "format": "csv"}))
        as_xlsx = _sheet_rows(_sheet(await api.get(BOARD, params={**params, "format": "xlsx"})))
    status = {r["unit"]["code"]: r["status"] for r in body["rows"]}
    assert status["00004"] != "done"
    assert status["00007"] == "done"
    # 13,432 of 13,433 is 99.99 %: rounded, 100.0 beside a status that is not done
    assert as_csv["00004"]["pct"] == "99.9"
    assert as_xlsx["00004"]["Tỷ lệ (%)"] == 99.9
    assert as_csv["00007"]["pct"] == "100.0"
    # 581 of 1000 is 58.1 %, as it is
    assert as_csv["00010"]["pct"] == "58.1"


def test_a_pace_just_below_a_threshold_never_reads_as_it() -> None:
    # 0.8996 rounded was 0.900 beside `behind` at the default threshold of 0.9
    row = LeaderboardRow(
        rank=1,
        previous_rank=1,
        rank_change=0,
        movement="=",
        days_behind=3,
        unit=UnitRef(code="00004", name="P", level=3),
        parent="001",
        value=8_996,
        baseline=0,
        target=20_000,
        pct=44.98,
        expected=10_000.0,
        expected_pct=50.0,
        pace=0.8996,
        run_rate_7d=None,
        required_daily_rate=None,
        projected_completion=None,
        status="behind",
        last_event_at=None,
        children_total=0,
        children_done=0,
    )
    (exported,) = csv.DictReader(io.StringIO(to_csv([row], "Asia/Ho_Chi_Minh").decode("utf-8-sig")))
    assert (exported["pace"], exported["pct"], exported["status"]) == ("0.899", "44.9", "behind")
    # cut from the figure's shortest decimal form: a float just under 0.291 is 0.291
    assert (cut(0.291, 3), cut(0.9, 3), cut(100.0, 1), cut(99.99, 1)) == (0.291, 0.9, 100.0, 99.9)
