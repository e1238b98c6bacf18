"""A comparison's `day` is the same day of both campaigns, or refused (docs/units-over-time.md,
"Comparisons over time"). Until 7 December 2026 a `day` beyond what a campaign had reached
was clamped for each campaign apart: on day 10 of this year's, `day=30` set this year's
figures now (day 10) against 2023's at day 30, and the reply said `"day": 30`."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.comparison import DayNotReached, moments
from tests.support.identities import READER
from tests.support.stack import Topics, aggregator_settings, running
from tests.support.world import build_world
from tiendo.board.campaign import Campaign
from tiendo.clock import ManualClock
from tiendo.pace import Thresholds

DAY = timedelta(days=1)
THIS_START = datetime(2025, 5, 10, 3, tzinfo=UTC)
LAST_START = datetime(2023, 5, 10, 3, tzinfo=UTC)
NOW = THIS_START + timedelta(days=10, hours=5)  # 10 whole days into this year's


def _campaign(cid: str, starts_at: datetime, days: float) -> Campaign:
    return Campaign(
        cid,
        cid,
        starts_at,
        starts_at + timedelta(days=days),
        "Asia/Ho_Chi_Minh",
        ("cccd_collected",),
        Thresholds(),
        (),
    )


@given(
    this_days=st.floats(20, 60),
    last_days=st.floats(20, 60),
    run=st.floats(0, 80),
    day=st.integers(0, 80),
)
def test_a_day_is_the_same_day_of_both_campaigns_or_refused(
    this_days: float, last_days: float, run: float, day: int
) -> None:
    this = _campaign("ml01-2025", THIS_START, this_days)
    last = _campaign("ml01-2023", LAST_START, last_days)
    now = THIS_START + timedelta(days=run)
    try:
        m = moments(this, last, day, now)
    except DayNotReached:
        # one of them has not reached that day: it is past its end, or still to come
        assert THIS_START + day * DAY > min(now, this.deadline) or (
            LAST_START + day * DAY > last.deadline
        )
    else:
        assert m.day == day
        assert (m.at, m.other_at) == (THIS_START + day * DAY, LAST_START + day * DAY)


def test_without_a_day_the_last_whole_day_run_is_compared_as_before() -> None:
    # the boards' stored comparison: the other campaign's moment kept to its deadline
    this = _campaign("ml01-2025", THIS_START, 50)
    last = _campaign("ml01-2023", LAST_START, 40)
    m = moments(this, last, None, NOW)
    assert (m.day, m.at, m.other_at) == (10, THIS_START + 10 * DAY, LAST_START + 10 * DAY)
    late = moments(this, last, None, THIS_START + timedelta(days=45, hours=5))
    assert (late.day, late.at, late.other_at) == (45, THIS_START + 45 * DAY, last.deadline)


@pytest.fixture
async def aggregator(
    database: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    await build_world(database, starts_at=LAST_START, days=40, campaign_id="ml01-2023")
    await build_world(database, starts_at=THIS_START, days=50, campaign_id="ml01-2025")
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    async with running(create_aggregator(settings, clock=ManualClock(NOW))) as client:
        client.headers.update(READER)
        yield client


async def test_the_route_refuses_a_day_not_reached_naming_day(
    aggregator: httpx.AsyncClient,
) -> None:
    url = "/v1/campaigns/ml01-2025/compare/ml01-2023"
    params = {"indicator": "cccd_collected", "unit": "01"}
    r = await aggregator.get(url, params={**params, "day": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["day"] == 10
    assert datetime.fromisoformat(body["at"]) == THIS_START + 10 * DAY
    assert datetime.fromisoformat(body["other_at"]) == LAST_START + 10 * DAY
    r = await aggregator.get(url, params={**params, "day": 30})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in r.json()["errors"]] == ["day"]
    assert "ml01-2025 has run 10 whole days" in r.json()["detail"]
