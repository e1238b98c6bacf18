"""The weekly-briefing leaderboard as CSV or XLSX (what the briefing room opens)."""

import csv
import io
from collections.abc import Sequence
from datetime import datetime

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill

from services.aggregator.models import LeaderboardRow

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


def _cells(row: LeaderboardRow) -> list[object]:
    values: dict[str, object] = {
        **row.model_dump(exclude={"unit"}),
        "code": row.unit.code,
        "name": row.unit.name,
    }
    out: list[object] = []
    for key, _ in COLUMNS:
        value = values.get(key)
        if isinstance(value, float):
            value = round(value, 3 if key == "pace" else 1)
        if isinstance(value, datetime):
            value = value.date().isoformat()
        out.append(value)
    return out


def to_csv(rows: Sequence[LeaderboardRow]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([key for key, _ in COLUMNS])
    writer.writerows(_cells(r) for r in rows)
    return buffer.getvalue().encode("utf-8-sig")  # the BOM makes spreadsheet apps read UTF-8


def to_xlsx(rows: Sequence[LeaderboardRow], title: str) -> bytes:
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
        sheet.append(_cells(row))
        if row.status in MUST_EXPLAIN:
            for cell in sheet[sheet.max_row]:
                cell.fill = highlight
    sheet.freeze_panes = "A3"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
