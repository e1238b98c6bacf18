"""The weekly-briefing leaderboard as CSV or XLSX (what the briefing room opens).

Moments are written as the room reads them, in the campaign's time zone (contract §5:
days are the campaign's): `projected_completion` as its local date, the XLSX title's
moment as local date and time with the zone's name. A UTC date put a projection due at
06:00 in Hà Nội on the day before.

The two figures a status is read against are cut, never rounded up, to the digits shown
(`pct` 1: `done` is 100; `pace` 3: `behind` is below the campaign's threshold): a unit at
13,432 of 13,433 reads 99.9, not 100.0 beside a status that is not `done`, and a pace of
0.8996 reads 0.899, not 0.900 beside `behind` at the default threshold of 0.9 (any
threshold of up to three decimals keeps its side). A unit that reached its target reads
at least 100.0 all the same. The other figures are rounded to 1 decimal.
"""

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill

from services.aggregator.models import LeaderboardRow
from tiendo.figure_digits import cut

COLUMNS = (
    ("rank", "Hạng"),
    ("code", "Mã đơn vị"),
    ("name", "Đơn vị"),
    ("previous_rank", "Hạng kỳ trước"),
    ("movement", "Thay đổi"),
    ("days_behind", "Số ngày chậm liên tiếp"),
    ("value", "Đã đạt"),
    ("target", "Chỉ tiêu"),
    ("pct", "Tỷ lệ (%)"),
    ("expected", "Theo kế hoạch"),
    ("pace", "Tiến độ"),
    ("run_rate_7d", "Bình quân 7 ngày"),
    ("required_daily_rate", "Cần mỗi ngày"),
    ("projected_completion", "Dự kiến về đích"),
    ("status", "Trạng thái"),
    ("children_done", "Đơn vị con về đích"),
    ("children_total", "Số đơn vị con"),
)
MUST_EXPLAIN = {"behind", "stale", "at_risk"}


# The figures cut to their digits (`cut`); the other floats are rounded to 1 decimal.
CUT = {"pct": 1, "pace": 3}


def sheet_title(campaign: str, indicator: str, level: int, at: datetime, timezone: str) -> str:
    """The XLSX sheet's first line: what is ranked, as of the local time of `at`."""
    local = at.astimezone(ZoneInfo(timezone))
    return f"{campaign} — {indicator} — cấp {level} — {local:%Y-%m-%d %H:%M} ({timezone})"


def _cells(row: LeaderboardRow, zone: ZoneInfo) -> list[object]:
    values: dict[str, object] = {
        **row.model_dump(exclude={"unit"}),
        "code": row.unit.code,
        "name": row.unit.name,
    }
    out: list[object] = []
    for key, _ in COLUMNS:
        value = values.get(key)
        if isinstance(value, float):
            value = cut(value, CUT[key]) if key in CUT else round(value, 1)
        if isinstance(value, datetime):
            value = value.astimezone(zone).date().isoformat()
        out.append(value)
    return out


def to_csv(rows: Sequence[LeaderboardRow], timezone: str) -> bytes:
    """The ranking as CSV, its dates in `timezone` (the campaign's)."""
    zone = ZoneInfo(timezone)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([key for key, _ in COLUMNS])
    writer.writerows(_cells(r, zone) for r in rows)
    return buffer.getvalue().encode("utf-8-sig")  # the BOM makes spreadsheet apps read UTF-8


def to_xlsx(rows: Sequence[LeaderboardRow], title: str, timezone: str) -> bytes:
    """The ranking as an XLSX sheet under `title` (`sheet_title`), its dates in `timezone`."""
    zone = ZoneInfo(timezone)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Xếp hạng"
    sheet.append([title])
    sheet["A1"].font = Font(bold=True, size=13)
    sheet.append([label for _, label in COLUMNS])
    for cell in sheet[2]:
        cell.font = Font(bold=True)
    highlight = PatternFill("solid", fgColor="FFE0E0")
    for row in rows:
        sheet.append(_cells(row, zone))
        if row.status in MUST_EXPLAIN:
            for cell in sheet[sheet.max_row]:
                cell.fill = highlight
    sheet.freeze_panes = "A3"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
