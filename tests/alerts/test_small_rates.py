"""Rates per day are shown whole from 10 a day, with one decimal below, and never as 0 when
they are not (docs/alerts.md, "Messages"): a residential group of 20 needing 0.4 a day is told
"0,4/ngày". Until 6 December 2026 every rate was rounded to a whole number (halves to even),
and it read "Cần 0/ngày": nothing needed."""

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.notifier.channels import Channel, WebhookChannel
from services.notifier.messages import rate_figure
from services.notifier.render import Renderer
from tests.support.notifier import (
    SECRET,
    HttpReceiver,
    behind_only_evaluator,
    outbox,
    tree_with_contacts,
)
from tests.support.stack import eventually
from tests.support.world import build_world
from tiendo.database import create_pool

STARTS = datetime(2023, 5, 10, 3, tzinfo=UTC)


async def test_a_small_groups_rate_reads_with_its_decimal(
    database: str, http_receiver: HttpReceiver
) -> None:
    # 20 to do in 50 days, nothing done after one: 20/49 = 0.41 a day needed
    await build_world(
        database,
        starts_at=STARTS,
        targets={"00004": 1000, "00007": 1000, "00010": 20},
        units=tree_with_contacts(http_receiver, chat=False),
    )
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=4)
    try:
        evaluator = await behind_only_evaluator(conn, database, "c1")
        for minutes in (0, 2):  # fires, then the group wait of a minute has passed
            await evaluator.evaluate_at(pool, STARTS + timedelta(days=1, minutes=minutes))
        async with httpx.AsyncClient(timeout=5) as client:
            channels: dict[str, Channel] = {"webhook": WebhookChannel(client, SECRET)}
            async with outbox(database, channels, max_attempts=2, backoff_seconds=0.05):

                async def told() -> dict[str, Any]:
                    got = http_receiver.at("hook/00010")
                    assert got
                    body: dict[str, Any] = got[0].json()
                    return body

                body = await eventually(told, timeout=15)
        assert body["firing"][0]["required_daily_rate"] == 0.4
        assert "Cần 0,4/ngày để về đích đúng hạn" in body["text"]
        assert "cần 0,4/ngày" in body["chat"]
    finally:
        await pool.close()
        await conn.close()


def _alert(rate: float | None, run_rate: float | None) -> dict[str, Any]:
    return {
        "kind": "firing",
        "message_id": "c1/00999/1",
        "campaign": {"id": "c1", "name": "ML01", "timezone": "Asia/Ho_Chi_Minh"},
        "campaign_ended": False,
        "recipient": {"unit": "00999", "name": "Tổ dân phố 5", "chief_name": None},
        "firing": [
            {
                "unit": "00999",
                "unit_name": "Tổ dân phố 5",
                "indicator_name": "Thu nhận hồ sơ CCCD",
                "rule_text": "chậm tiến độ",
                "value": 2,
                "target": 20,
                "pct": 10.0,
                "expected": 6.5,
                "pace": 0.308,
                "required_daily_rate": rate,
                "run_rate_7d": run_rate,
                "rank": None,
                "of_units": None,
                "since": "2023-05-20T10:00:00+07:00",
                "escalation_level": 0,
                "new": True,
                "deadline_passed": False,
            }
        ],
        "resolved": [],
        "now": "2023-05-25T10:00:00+07:00",
    }


@pytest.mark.parametrize(
    ("rate", "run_rate", "vi", "en"),
    [
        (
            0.4,
            0.1,
            "Cần 0,4/ngày để về đích đúng hạn (7 ngày qua: 0,1/ngày)",
            "Needs 0.4/day to finish on time (last 7 days: 0.1/day)",
        ),
        (
            2.5,
            0.0,
            "Cần 2,5/ngày để về đích đúng hạn (7 ngày qua: 0/ngày)",
            "Needs 2.5/day to finish on time (last 7 days: 0/day)",
        ),
        (0.02, None, "Cần <0,1/ngày để về đích đúng hạn.", "Needs <0.1/day to finish on time."),
        (
            12.5,
            1234.5,
            "Cần 13/ngày để về đích đúng hạn (7 ngày qua: 1.235/ngày)",
            "Needs 13/day to finish on time (last 7 days: 1,235/day)",
        ),
    ],
)
def test_rates_read_the_same_rule_in_both_languages(
    rate: float, run_rate: float | None, vi: str, en: str
) -> None:
    renderer = Renderer()
    for language, expected in (("vi", vi), ("en", en)):
        text = renderer.alert(language, {**_alert(rate, run_rate), "language": language}).text
        assert expected in text, text


def test_a_positive_rate_is_never_carried_as_zero() -> None:
    # what the webhook body and the alert's details carry, and the texts read
    assert [rate_figure(v) for v in (None, 0.0, 0.03, 0.004, 0.05, 0.44, 12.34)] == [
        None,
        0.0,
        0.03,
        0.004,
        0.1,
        0.4,
        12.3,
    ]


def test_the_figures_a_status_is_read_against_never_read_past_their_line() -> None:
    # a pace of 0.8996 beside "chậm tiến độ" (behind, under 0.9) read 0,90 when rounded,
    # and 99.96 % of a target read 100,0 % beside a unit not done
    renderer = Renderer()
    alert = _alert(0.4, 0.1)
    alert["firing"][0] |= {"pace": 0.8996, "pct": 99.96}
    for language, pace, pct in (("vi", "0,89", "99,9 %"), ("en", "0.89", "99.9%")):
        text = renderer.alert(language, {**alert, "language": language}).text
        assert pace in text, text
        assert pct in text, text
        for past in ("0,90", "0.90", "100"):
            assert past not in text, text
