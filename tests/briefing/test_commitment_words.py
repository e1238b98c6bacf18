"""A committed date means "back on plan by the end of that day", and is checked at that
day's end: the words say so ("đến hết ngày", "by the end of"), in every language and
wherever a commitment is quoted (the pack, the escalation's words, the link page: see
test_link_refusals), never "trước ngày" (before the day), which named a day earlier
than the one checked. Today is a date a chief may commit to: its end is still ahead."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from services.notifier.briefing.formats import commitment_text
from services.notifier.explanations import (
    Commitment,
    ExplanationPolicy,
    check_explanation,
    due_at,
    local_today,
)
from services.notifier.repository.explanations import Explanation
from services.notifier.responses import response_text

ZONE = "Asia/Ho_Chi_Minh"
STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
DEADLINE = STARTS + timedelta(days=50)
LAST_DAY = local_today(DEADLINE, ZONE)


@given(st.dates(STARTS.date(), LAST_DAY - timedelta(days=1)))
def test_the_words_name_the_day_whose_end_the_check_is_at(by: date) -> None:
    due = due_at(Commitment(by, None), STARTS, ZONE, DEADLINE)
    # checked at the first instant after the named day: all of that day counts
    assert (due - timedelta(microseconds=1)).astimezone(ZoneInfo(ZONE)).date() == by
    assert due.astimezone(ZoneInfo(ZONE)).time() == time()
    named = f"{by:%d/%m/%Y}"
    assert commitment_text(Commitment(by, None), "vi") == f"kịp tiến độ đến hết ngày {named}"
    assert commitment_text(Commitment(by, None), "en") == f"back on plan by the end of {named}"
    said = Explanation(
        1, "c1", "00004", "cccd_collected", 1, "thieu_may", "", Commitment(by, None), 0, "l", STARTS
    )
    told = response_text(False, said, ExplanationPolicy(), "vi")
    assert f"cam kết: kịp tiến độ đến hết ngày {named}." in told
    assert "trước ngày" not in told


@given(st.integers(0, 23 * 60 + 59))
def test_today_may_be_committed_to_its_end_is_still_ahead(minutes: int) -> None:
    now = datetime.combine(date(2023, 5, 20), time(), ZoneInfo(ZONE)) + timedelta(minutes=minutes)
    today = local_today(now, ZONE)
    given_ = check_explanation(
        ExplanationPolicy(),
        frozenset({"cccd_collected"}),
        indicator="cccd_collected",
        cause="thieu_may",
        detail="",
        committed_date=today,
        committed_rate=None,
        today=today,
        last_day=LAST_DAY,
    )
    assert due_at(given_.commitment, now, ZONE, DEADLINE) > now
