"""The pack's "Cam kết kỳ trước: kết quả" lists every commitment that came due since the
previous briefing, met or not, whatever the chief wrote after it: a missed commitment does
not leave the pack with the next version. A version replaced before its due moment never
came due; one that came due while the notifier was not running is checked all the same,
and the pack shows what was checked (docs/briefing.md)."""

import io
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
from openpyxl import load_workbook

from services.notifier.briefing import pack
from services.notifier.evaluator import Evaluator
from services.notifier.explanations import Commitment, ExplanationIn
from services.notifier.render import Renderer
from services.notifier.repository import explanations as sql
from services.notifier.settings import NotifierSettings
from tests.support.identities import ADMIN
from tests.support.notifier import Harness, progress
from tests.support.world import build_world
from tiendo.database import create_pool

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
STARTS = datetime(2023, 5, 10, 10, 0, tzinfo=TZ)  # the harness's campaign: 50 days
BRIEFING = datetime(2023, 5, 22, 8, 0, tzinfo=TZ)  # Monday, the default slot; the one
# before it is Monday 15 May


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2023, 5, day, hour, minute, tzinfo=TZ)


async def _explain(
    conn: asyncpg.Connection,
    unit: str,
    indicator: str,
    by: date,
    at: datetime,
    detail: str = "",
) -> None:
    link = await sql.create_link(conn, "c1", unit, [], "test", at, timedelta(days=7))
    given = ExplanationIn(indicator, "thieu_may", detail, Commitment(by, None))
    await sql.add_explanation(
        conn, "c1", unit, given, value_then=0, link_id=link.id, at=at, remote="test"
    )


def _commitments(xlsx: bytes) -> set[tuple[str, str, str, str]]:
    """(code, the commitment, its due moment, Đạt / Không đạt) of the pack's sheet."""
    rows = list(load_workbook(io.BytesIO(xlsx))["Cam kết"].iter_rows(values_only=True))[1:]
    return {(str(r[1]), str(r[3]), str(r[4]), str(r[6])) for r in rows}


async def _pack_commitments(h: Harness) -> set[tuple[str, str, str, str]]:
    r = await h.api.get(
        "/v1/campaigns/c1/briefing",
        params={"at": BRIEFING.isoformat(), "level": "3", "format": "xlsx"},
        headers=ADMIN,
        timeout=300,
    )
    assert r.status_code == 200, r.text
    return _commitments(r.content)


async def test_a_commitment_that_came_due_stays_in_the_pack_whatever_was_written_after(
    harness: Harness,
) -> None:
    h = harness  # Saturday 20 May 10:00; nobody has reported: every ward is behind
    # 00010 reports on plan on Friday evening: its commitment for Friday is met
    await h.feed.send(progress("00010", 195, at=_at(19, 20)))
    conn = await asyncpg.connect(h.database)
    try:
        # by Thursday 18 (due Friday 00:00), missed; amended on Saturday after the check
        await _explain(conn, "00004", "cccd_collected", date(2023, 5, 18), _at(16, 10))
        # by Friday 19 (due Saturday 00:00), met; amended on Saturday after the check
        await _explain(conn, "00010", "cccd_collected", date(2023, 5, 19), _at(16, 10))
        # by Sunday 21 (due Monday 00:00, before the briefing), but replaced on Friday by
        # a later date: that commitment never came due
        await _explain(conn, "00007", "cccd_collected", date(2023, 5, 21), _at(16, 10))
        await _explain(conn, "00007", "cccd_collected", date(2023, 5, 30), _at(19, 9))
        # by Friday 19, missed, and amended at 02:00 on Saturday, before any pass checked
        # it (the notifier was down overnight)
        await _explain(conn, "00004", "eid_activated_l2", date(2023, 5, 19), _at(16, 10))
        await _explain(conn, "00004", "eid_activated_l2", date(2023, 5, 27), _at(20, 2))

        await h.advance(timedelta(minutes=1))  # a full pass checks what came due
        # Saturday, after the checks: new versions, with new dates
        await _explain(conn, "00004", "cccd_collected", date(2023, 5, 26), _at(20, 11), "v2")
        await _explain(conn, "00010", "cccd_collected", date(2023, 5, 29), _at(20, 11), "v2")
        await h.advance(timedelta(days=2))  # Monday, after the briefing: another pass
        checked = await conn.fetch(
            "SELECT e.unit, e.indicator, e.version, k.met FROM commitment_checks k"
            " JOIN explanations e ON e.id = k.explanation_id ORDER BY 1, 2"
        )
        assert [tuple(r) for r in checked] == [
            ("00004", "cccd_collected", 1, False),
            ("00004", "eid_activated_l2", 1, False),
            ("00010", "cccd_collected", 1, True),
        ]
    finally:
        await conn.close()

    assert await _pack_commitments(h) == {
        ("00004", "kịp tiến độ đến hết ngày 18/05/2023", "00:00 19/05/2023", "Không đạt"),
        ("00004", "kịp tiến độ đến hết ngày 19/05/2023", "00:00 20/05/2023", "Không đạt"),
        ("00010", "kịp tiến độ đến hết ngày 19/05/2023", "00:00 20/05/2023", "Đạt"),
    }


async def test_a_commitment_not_checked_yet_is_judged_as_the_check_will(database: str) -> None:
    """A pack rendered before the pass that checks a commitment (or while the campaign's
    checks are held back) shows it judged at its due moment, and the same once checked."""
    await build_world(database, starts_at=STARTS)
    settings = NotifierSettings(database_url=database, digest_times="", bottom_rank_n=0)
    pool = await create_pool(database, max_size=2)
    conn = await asyncpg.connect(database)
    try:
        # by Thursday 18, missed; amended on Friday, after it came due
        await _explain(conn, "00007", "cccd_collected", date(2023, 5, 18), _at(16, 10))
        await _explain(conn, "00007", "cccd_collected", date(2023, 5, 25), _at(19, 9))
        now = BRIEFING + timedelta(hours=2)  # no pass has run yet

        async def shown() -> set[tuple[str, str, str, str]]:
            document = await pack.briefing_pack(
                conn, settings, "c1", at=BRIEFING, now=now, level=3, language=None, fmt="xlsx"
            )
            return _commitments(document.body)

        expected = {
            ("00007", "kịp tiến độ đến hết ngày 18/05/2023", "00:00 19/05/2023", "Không đạt")
        }
        assert await shown() == expected
        assert await conn.fetchval("SELECT count(*) FROM commitment_checks") == 0
        await Evaluator(settings, Renderer(), ("webhook",)).evaluate_at(pool, now)
        assert await conn.fetchval("SELECT count(*) FROM commitment_checks") == 1
        assert await shown() == expected
    finally:
        await conn.close()
        await pool.close()
