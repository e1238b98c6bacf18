"""Nothing repeats or escalates after the deadline, commitments included (docs/briefing.md):
a link lives up to 60 days, past the unit's deadline (its own, else the campaign's), but
its form takes no commitment then; and a commitment stored after it (the form once took a
rate alone) never comes due, so its chief is never told "not met" of a moment before they
wrote it."""

import re
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from services.aggregator.admin import TargetIn, upsert_targets
from services.notifier.explanations import (
    DEFAULT_CAUSES,
    Commitment,
    ExplanationIn,
    ExplanationPolicy,
    Refused,
    came_due,
    check_explanation,
)
from services.notifier.repository import explanations as sql
from tests.support.identities import ADMIN
from tests.support.notifier import Harness, delivered_link

ZONE = "Asia/Ho_Chi_Minh"
DEADLINE = datetime(2023, 6, 9, 16, 59, 59, tzinfo=UTC)  # 23:59:59 local
LAST_DAY = date(2023, 6, 9)
KEY = "00004|cccd_collected"
REFUSED_AFTER = "Đã hết thời hạn của chỉ tiêu"


@given(
    by=st.none() | st.dates(),
    rate=st.none() | st.floats(0.5, 1000),
    minutes=st.integers(-60 * 24 * 60, 60 * 24 * 30),
)
def test_a_commitment_never_comes_due_at_or_before_it_was_written(
    by: date | None, rate: float | None, minutes: int
) -> None:
    assume(by is not None or rate is not None)
    submitted = DEADLINE + timedelta(minutes=minutes)
    due = came_due(Commitment(by, rate), submitted, None, ZONE, DEADLINE)
    assert due is None or submitted < due <= DEADLINE
    if submitted >= DEADLINE:
        assert due is None  # nothing is checked after the deadline


@given(by=st.none() | st.dates(), rate=st.none() | st.floats(0.5, 1000))
def test_past_the_deadline_the_form_takes_no_commitment(
    by: date | None, rate: float | None
) -> None:
    with pytest.raises(Refused, match=REFUSED_AFTER):
        check_explanation(
            ExplanationPolicy(),
            frozenset({"cccd_collected"}),
            indicator="cccd_collected",
            cause="thieu_may",
            detail="",
            committed_date=by,
            committed_rate=rate,
            today=LAST_DAY,
            last_day=LAST_DAY,
            deadline_passed=True,
        )


def _nonce(page: str) -> str:
    found = re.search(
        r'action="[^"]*/explain"[^>]*>\s*<input type="hidden" name="nonce" value="([^"]+)"', page
    )
    assert found, page[:500]
    return found.group(1)


def _error(page: str) -> str:
    """The refusal the page shows above the form."""
    found = re.search(r'<div class="error" role="alert">([^<]*)</div>', page)
    assert found, page[:500]
    return found.group(1)


async def _explain(h: Harness, link: str, **commitment: str) -> tuple[int, str]:
    page = await h.api.get(link)
    assert page.status_code == 200, page.text[:300]
    r = await h.api.post(
        f"{link}/explain",
        data={
            "nonce": _nonce(page.text),
            "key": KEY,
            "cause": "thieu_may",
            "detail": "máy hỏng",
            "committed_date": "",
            "committed_rate": "",
            **commitment,
        },
    )
    return r.status_code, r.text


async def _long_lived_link(h: Harness) -> str:
    r = await h.api.put(
        "/v1/campaigns/c1/explanation-policy",
        json={
            "causes": [{"code": c.code, "vi": c.vi, "en": c.en} for c in DEFAULT_CAUSES],
            "link_ttl_days": 60,
        },
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    return await delivered_link(h)


async def _stored(h: Harness) -> tuple[int, int, int]:
    """Explanations, commitment checks and commitment messages stored."""
    conn = await asyncpg.connect(h.database)
    try:
        return (
            await conn.fetchval("SELECT count(*) FROM explanations"),
            await conn.fetchval("SELECT count(*) FROM commitment_checks"),
            await conn.fetchval("SELECT count(*) FROM notifications WHERE kind = 'commitment'"),
        )
    finally:
        await conn.close()


async def test_a_link_past_the_campaigns_deadline_takes_no_commitment(harness: Harness) -> None:
    h = harness
    link = await _long_lived_link(h)
    deadline = h.starts_at + timedelta(days=50)
    h.clock.advance(deadline + timedelta(hours=6) - h.clock.now())
    assert (await h.api.get(link)).status_code == 200  # the link itself still works
    for field, value in (("committed_rate", "50"), ("committed_date", "2023-06-29")):
        status, page = await _explain(h, link, **{field: value})
        assert status == 422, page[:300]
        # the campaign's last day named, the form kept as typed
        assert REFUSED_AFTER in _error(page)
        assert "29/06/2023" in _error(page)
        assert f'name="{field}" id="{field}"' in page
        assert f'value="{value}"' in page
    await h.advance(timedelta(minutes=1))  # a full pass: nothing to check, nobody told
    assert await _stored(h) == (0, 0, 0)


async def test_a_commitment_stored_after_the_deadline_is_never_told_not_met(
    harness: Harness,
) -> None:
    h = harness
    link = await _long_lived_link(h)
    deadline = h.starts_at + timedelta(days=50)
    h.clock.advance(deadline + timedelta(hours=6) - h.clock.now())
    # a rate alone written 6 h after the deadline, as the form once took it: its due
    # moment (`due_at`, at the latest the deadline) comes before it was written
    conn = await asyncpg.connect(h.database)
    try:
        link_id = await conn.fetchval("SELECT id FROM links WHERE recipient = '00004' LIMIT 1")
        await sql.add_explanation(
            conn,
            "c1",
            "00004",
            ExplanationIn("cccd_collected", "thieu_may", "", Commitment(None, 50.0)),
            value_then=0,
            link_id=link_id,
            at=h.clock.now(),
            remote="t",
        )
    finally:
        await conn.close()
    assert link
    await h.advance(timedelta(minutes=1))
    await h.advance(timedelta(days=8))  # and a week later, when a rate would come due
    assert await _stored(h) == (1, 0, 0)


async def test_a_units_own_deadline_bounds_its_commitments(harness: Harness) -> None:
    h = harness
    own = h.starts_at + timedelta(days=15)  # 25 May 2023, 10:00 local; the campaign's: 29 June
    conn = await asyncpg.connect(h.database)
    try:
        async with conn.transaction():
            target = TargetIn(unit="00004", indicator="cccd_collected", target=1000, deadline=own)
            # the other indicator's own deadline two days later: both before the campaign's
            later = TargetIn(
                unit="00004",
                indicator="eid_activated_l2",
                target=1000,
                deadline=own + timedelta(days=2),
            )
            await upsert_targets(conn, "c1", [target, later], "test")
    finally:
        await conn.close()
    link = await delivered_link(h)
    # the form names each indicator's last day (they differ), and its date picker offers
    # the latest of them, not the campaign's (29 June)
    form = (await h.api.get(link)).text
    assert "Thu nhận hồ sơ CCCD (hạn 25/05/2023)</option>" in form, form[-2000:]
    assert "định danh mức 2 (hạn 27/05/2023)</option>" in form
    assert re.search(r'id="committed_date" min="[^"]*" max="2023-05-27"', form)
    # before it: a date after the unit's own last day is refused, its last day is taken
    status, page = await _explain(h, link, committed_date="2023-06-01")
    assert status == 422, page[:300]
    assert "25/05/2023" in _error(page)
    # after it (the campaign still runs): no commitment at all
    h.clock.advance(own + timedelta(hours=1) - h.clock.now())
    status, page = await _explain(h, link, committed_rate="50")
    assert status == 422, page[:300]
    assert REFUSED_AFTER in _error(page)
    assert "25/05/2023" in _error(page)
    assert await _stored(h) == (0, 0, 0)
