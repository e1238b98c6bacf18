"""Giải trình's model (issue 14): what a chief may write, versions that are amended and never
erased, one-time form tokens, acknowledgements and snoozes, commitments checked."""

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifier.explanations import (
    MAX_DETAIL,
    Commitment,
    ExplanationIn,
    ExplanationPolicy,
    Refused,
    check_commitment,
    check_explanation,
    due_at,
    snooze_until,
)
from services.notifier.repository import explanations as sql
from services.notifier.responses import repeat_quieted
from tests.support.world import build_world

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
NOW = STARTS + timedelta(days=10)
TODAY = date(2023, 5, 20)
# the campaign's deadline, 20 days after today, and its local day (Asia/Ho_Chi_Minh)
DEADLINE = datetime(2023, 6, 9, 16, 59, 59, tzinfo=UTC)
LAST_DAY = date(2023, 6, 9)
ZONE = "Asia/Ho_Chi_Minh"
POLICY = ExplanationPolicy()
CAUSES = [c.code for c in POLICY.causes]


def _check(
    *,
    indicator: str = "cccd_collected",
    cause: str = "thieu_may",
    detail: str = "",
    committed_date: date | None = TODAY,
    committed_rate: float | None = None,
) -> ExplanationIn:
    return check_explanation(
        POLICY,
        frozenset({"cccd_collected"}),
        indicator=indicator,
        cause=cause,
        detail=detail,
        committed_date=committed_date,
        committed_rate=committed_rate,
        today=TODAY,
        last_day=LAST_DAY,
    )


@given(
    cause=st.text(max_size=20),
    detail=st.text(max_size=MAX_DETAIL + 50),
    days=st.integers(-30, 60),
    rate=st.none() | st.floats(-10, 1e7, allow_nan=False),
)
def test_the_form_takes_only_a_listed_cause_a_bounded_text_and_a_commitment_in_the_campaign(
    cause: str, detail: str, days: int, rate: float | None
) -> None:
    by = TODAY + timedelta(days=days)
    valid = (
        cause in CAUSES
        and len(detail) <= MAX_DETAIL
        and 0 <= days <= (LAST_DAY - TODAY).days
        and (rate is None or 0 < rate <= 1_000_000)
    )
    try:
        _check(cause=cause, detail=detail, committed_date=by, committed_rate=rate)
    except Refused:
        assert not valid
    else:
        assert valid


def test_script_tags_are_kept_as_text_and_a_commitment_is_required() -> None:
    got = _check(detail="<script>alert(1)</script>")
    assert got.detail == "<script>alert(1)</script>"  # the pages escape it
    with pytest.raises(Refused):
        _check(committed_date=None)
    with pytest.raises(Refused):
        _check(indicator="eid_activated_l2")


@given(by=st.dates(), days=st.integers(0, 30))
def test_a_commitment_comes_due_at_its_days_end_or_at_the_deadline_whatever_date_is_stored(
    by: date, days: int
) -> None:
    # Any date at all: a row stored before the form refused dates after the campaign
    # (9999-12-31 has no next day) must not fail the pass that checks commitments.
    submitted = NOW + timedelta(days=days)
    due = due_at(Commitment(by, None), submitted, ZONE, DEADLINE)
    if by < LAST_DAY:
        # the local midnight that ends the committed day (the zone's offset of that year)
        local = due.astimezone(ZoneInfo(ZONE))
        assert (local.date(), local.time()) == (by + timedelta(days=1), time())
    else:
        assert due == DEADLINE
    rate_due = due_at(Commitment(None, 5.0), submitted, ZONE, DEADLINE)
    assert rate_due == min(submitted + timedelta(days=7), DEADLINE)


# every float a form's `float()` can give, NaN, infinities and 1e300 among them (no
# timedelta holds those: they raised past `Refused`, a 500)
@given(st.floats() | st.floats(-5, 200))
def test_a_snooze_is_bounded_by_the_policy(hours: float) -> None:
    try:
        ends = snooze_until(POLICY, NOW, hours)
    except Refused:
        assert not 1 <= hours <= POLICY.snooze_max / timedelta(hours=1)
    else:
        assert NOW < ends <= NOW + POLICY.snooze_max


@given(st.integers(0, 500), st.integers(0, 500), st.floats(0.5, 50), st.integers(1, 14))
def test_a_rate_is_met_when_the_unit_gained_that_much_a_day(
    then: int, gained: int, rate: float, days: int
) -> None:
    checked = check_commitment(
        Commitment(None, rate),
        value_then=then,
        submitted_at=NOW,
        value_now=then + gained,
        pace_now=None,
        threshold=0.9,
        at=NOW + timedelta(days=days),
    )
    assert checked.met == (gained / days >= rate)


@pytest.fixture
async def conn(database: str) -> AsyncIterator[asyncpg.Connection]:
    await build_world(database, starts_at=STARTS)
    # the service's own role: what it may and may not do is part of the promise
    c = await asyncpg.connect(database.replace("://tiendo@", "://tiendo_notifier@", 1))
    try:
        yield c
    finally:
        await c.close()


async def _alert(conn: asyncpg.Connection, unit: str) -> int:
    found: int = await conn.fetchval(
        "INSERT INTO alerts (campaign_id, unit, indicator, rule, state, since, fired_at,"
        " last_evaluated_at) VALUES ('c1', $1, 'cccd_collected', 'behind', 'firing', $2, $2, $2)"
        " RETURNING id",
        unit,
        NOW,
    )
    return found


async def test_an_amendment_is_a_new_version_and_nothing_is_ever_erased(
    conn: asyncpg.Connection,
) -> None:
    alert = await _alert(conn, "00004")
    link = await sql.create_link(conn, "c1", "00004", [alert], "c1/00004/1", NOW, timedelta(days=7))
    first = _check(detail="máy hỏng", committed_date=TODAY + timedelta(days=3))
    second = _check(cause="mat_dien", committed_date=None, committed_rate=25.0)
    for given_, at in ((first, NOW), (second, NOW + timedelta(hours=2))):
        await sql.add_explanation(
            conn,
            "c1",
            "00004",
            given_,
            value_then=120,
            link_id=link.id,
            at=at,
            remote="t",
        )
    kept = await sql.versions(conn, "c1", "00004", "cccd_collected")
    assert [(e.version, e.cause, e.link_id) for e in kept] == [
        (1, "thieu_may", link.id),
        (2, "mat_dien", link.id),
    ]
    latest = await sql.latest_explanations(conn, "c1", NOW + timedelta(hours=1))
    assert latest[("00004", "cccd_collected")].version == 1  # as the briefing then saw it
    for statement in ("UPDATE explanations SET detail = ''", "DELETE FROM explanations"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    assert len(await sql.versions(conn, "c1", "00004", "cccd_collected")) == 2


async def test_a_form_token_is_taken_once_and_only_by_its_link(conn: asyncpg.Connection) -> None:
    alert = await _alert(conn, "00007")
    link = await sql.create_link(conn, "c1", "00007", [alert], "", NOW, timedelta(days=7))
    other = await sql.create_link(conn, "c1", "00007", [alert], "", NOW, timedelta(days=7))
    nonce = await sql.issue_nonce(conn, link.id, NOW)
    assert not await sql.take_nonce(conn, nonce, other.id, "acknowledge", NOW)
    assert await sql.take_nonce(conn, nonce, link.id, "acknowledge", NOW)
    assert not await sql.take_nonce(conn, nonce, link.id, "acknowledge", NOW)
    await sql.acknowledge(conn, [alert], link.id, NOW, "t")
    assert await sql.acknowledged(conn, [alert]) == {alert: NOW}
    await sql.snooze(conn, [alert], link.id, NOW, NOW + timedelta(hours=4), "t")
    assert await sql.snoozed(conn, [alert], NOW + timedelta(hours=1)) == {
        alert: NOW + timedelta(hours=4)
    }
    assert await sql.snoozed(conn, [alert], NOW + timedelta(hours=5)) == {}


async def test_a_repeat_is_held_back_only_while_every_alert_is_acknowledged_or_snoozed(
    conn: asyncpg.Connection,
) -> None:
    first, second = await _alert(conn, "00004"), await _alert(conn, "00010")
    # the district's chief, told of both wards' escalated alerts
    link = await sql.create_link(conn, "c1", "001", [first, second], "", NOW, timedelta(days=7))
    change = NOW - timedelta(hours=1)  # the last change message
    assert not await repeat_quieted(conn, [first, second], change, NOW, "001")
    await sql.acknowledge(conn, [first], link.id, NOW, "t")
    assert not await repeat_quieted(conn, [first, second], change, NOW, "001")  # one still open
    await sql.snooze(conn, [second], link.id, NOW, NOW + timedelta(hours=4), "t")
    assert await repeat_quieted(conn, [first, second], change, NOW + timedelta(hours=1), "001")
    # the snooze ended
    assert not await repeat_quieted(conn, [first, second], change, NOW + timedelta(hours=5), "001")
    # a change message after the acknowledgement: it no longer holds
    later = NOW + timedelta(hours=2)
    assert not await repeat_quieted(conn, [first], later, later + timedelta(hours=1), "001")


async def test_a_units_acknowledgement_quiets_its_own_reminders_not_its_parents(
    conn: asyncpg.Connection,
) -> None:
    alert = await _alert(conn, "00010")
    own = await sql.create_link(conn, "c1", "00010", [alert], "", NOW, timedelta(days=7))
    change = NOW - timedelta(hours=1)
    await sql.acknowledge(conn, [alert], own.id, NOW, "t")
    await sql.snooze(conn, [alert], own.id, NOW, NOW + timedelta(hours=72), "t")
    assert await repeat_quieted(conn, [alert], change, NOW + timedelta(hours=1), "00010")
    # the district, told of it by escalation, is still reminded
    assert not await repeat_quieted(conn, [alert], change, NOW + timedelta(hours=1), "001")
    # and the link page still shows what the ward did
    assert await sql.acknowledged(conn, [alert]) == {alert: NOW}
