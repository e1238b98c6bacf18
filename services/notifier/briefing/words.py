"""The pack's words in Vietnamese (the default) and English, and how numbers are written."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

WORDS: dict[str, dict[str, str]] = {
    "vi": {
        "title": "Giao ban tuần",
        "sheet_ranking": "Xếp hạng",
        "sheet_laggards": "Giải trình",
        "sheet_commitments": "Cam kết",
        "at": "Thời điểm",
        "previous": "Kỳ trước",
        "level": "Cấp",
        "headline": "Số liệu chính so với kế hoạch",
        "value": "Đã đạt",
        "target": "Chỉ tiêu",
        "pct": "Tỷ lệ",
        "expected": "Theo kế hoạch",
        "pace": "Tiến độ",
        "run_rate": "Bình quân 7 ngày",
        "required": "Cần mỗi ngày",
        "projected": "Dự kiến về đích",
        "status": "Trạng thái",
        "chart": "Tiến độ so với kế hoạch theo ngày",
        "progress_vs_plan": "đã đạt so với kế hoạch",
        "plan": "Kế hoạch",
        "actual": "Đã đạt",
        "ranking": "Bảng xếp hạng",
        "rank": "Hạng",
        "unit": "Đơn vị",
        "previous_rank": "Hạng kỳ trước",
        "movement": "Thay đổi",
        "days_behind": "Ngày chậm liên tiếp",
        "new": "mới",
        "laggards": "Đơn vị chậm và giải trình",
        "cause": "Nguyên nhân",
        "detail": "Nội dung",
        "commitment": "Cam kết",
        "by": "kịp tiến độ đến hết ngày",
        "per_day": "mỗi ngày",
        "not_explained": "CHƯA GIẢI TRÌNH",
        "acknowledged": "đã nhận cảnh báo",
        "not_acknowledged": "chưa nhận cảnh báo",
        "version": "lần",
        "commitments": "Cam kết kỳ trước: kết quả",
        "due": "Hạn",
        "met": "Đạt",
        "missed": "Không đạt",
        "none": "Không có.",
        "done": "đã về đích",
        "stale": "không báo cáo",
        "behind": "chậm tiến độ",
        "at_risk": "có nguy cơ",
        "on_track": "đúng tiến độ",
    },
    "en": {
        "title": "Weekly briefing",
        "sheet_ranking": "Ranking",
        "sheet_laggards": "Explanations",
        "sheet_commitments": "Commitments",
        "at": "As of",
        "previous": "Previous briefing",
        "level": "Level",
        "headline": "Headline figures against plan",
        "value": "Value",
        "target": "Target",
        "pct": "Done",
        "expected": "Plan to date",
        "pace": "Pace",
        "run_rate": "7-day rate",
        "required": "Needed per day",
        "projected": "Projected completion",
        "status": "Status",
        "chart": "Progress against plan, day by day",
        "progress_vs_plan": "value against plan",
        "plan": "Plan",
        "actual": "Value",
        "ranking": "Ranking",
        "rank": "Rank",
        "unit": "Unit",
        "previous_rank": "Previous rank",
        "movement": "Change",
        "days_behind": "Days behind in a row",
        "new": "new",
        "laggards": "Lagging units and their explanations",
        "cause": "Cause",
        "detail": "Explanation",
        "commitment": "Commitment",
        "by": "back on plan by the end of",
        "per_day": "per day",
        "not_explained": "NOT EXPLAINED",
        "acknowledged": "acknowledged the alert",
        "not_acknowledged": "did not acknowledge",
        "version": "version",
        "commitments": "Last week's commitments: outcome",
        "due": "Due",
        "met": "Met",
        "missed": "Missed",
        "none": "None.",
        "done": "done",
        "stale": "not reporting",
        "behind": "behind",
        "at_risk": "at risk",
        "on_track": "on track",
    },
}


def number(language: str, value: float | None, digits: int = 0) -> str:
    """1.234,5 in Vietnamese, 1,234.5 in English; — for an unknown figure."""
    if value is None:
        return "—"
    text = f"{value:,.{digits}f}"
    if language == "vi":
        text = text.replace(",", " ").replace(".", ",").replace(" ", ".")
    return text


def local(value: datetime | date | None, timezone: str) -> str:
    """A moment as local time and date (a date as is), as the room reads it."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.astimezone(ZoneInfo(timezone)).strftime("%H:%M %d/%m/%Y")
    return value.strftime("%d/%m/%Y")
