"""A checked commitment is written to each contact in its own language, like every other
message (docs/alerts.md, *Language*): the text, subject, indicator name and numbers of the
row match the `language` the delivery log shows for it; a contact without a language gets
the campaign policy's."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.notifier.commitments import check_commitments
from services.notifier.explanations import ExplanationPolicy, check_explanation
from services.notifier.messages import Outgoing
from services.notifier.metrics import NotifierMetrics
from services.notifier.policy import effective
from services.notifier.repository import explanations as sql
from services.notifier.repository import reference as reference_sql
from services.notifier.repository.reference import Contact
from services.notifier.settings import NotifierSettings
from services.notifier.summary import Summary
from tests.support.world import build_world
from tiendo.board import repository as board

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
NOW = STARTS + timedelta(days=10)  # 10:00 on 20/05/2023 in Asia/Ho_Chi_Minh
UNIT = "00004"


@pytest.fixture
async def conn(database: str) -> AsyncIterator[asyncpg.Connection]:
    await build_world(database, starts_at=STARTS)
    # the service's own role, as the evaluator runs
    c = await asyncpg.connect(database.replace("://tiendo@", "://tiendo_notifier@", 1))
    try:
        yield c
    finally:
        await c.close()


async def _commitment_due(conn: asyncpg.Connection) -> None:
    """An explanation of UNIT committing to a date that is today: due at the day's end."""
    alert: int = await conn.fetchval(
        "INSERT INTO alerts (campaign_id, unit, indicator, rule, state, since, fired_at,"
        " last_evaluated_at) VALUES ('c1', $1, 'cccd_collected', 'behind', 'firing', $2, $2, $2)"
        " RETURNING id",
        UNIT,
        NOW,
    )
    link = await sql.create_link(conn, "c1", UNIT, [alert], "c1/00004/1", NOW, timedelta(days=7))
    given = check_explanation(
        ExplanationPolicy(),
        frozenset({"cccd_collected"}),
        indicator="cccd_collected",
        cause="thieu_may",
        detail="",
        committed_date=NOW.date(),
        committed_rate=None,
        today=NOW.date(),
        last_day=(STARTS + timedelta(days=50)).date(),
    )
    await sql.add_explanation(
        conn, "c1", UNIT, given, value_then=1200, link_id=link.id, at=NOW, remote="t"
    )


async def _check(conn: asyncpg.Connection, policy_language: str) -> list[asyncpg.Record]:
    settings = NotifierSettings(database_url="postgresql://unused")
    policies = {"c1": effective(settings, {"language": policy_language})}
    campaigns = await board.campaigns(conn)
    outgoing = Outgoing(("email", "webhook", "chat"), None, NotifierMetrics())
    at = NOW + timedelta(days=1)
    summary = Summary(at)
    await check_commitments(conn, campaigns, policies, at, outgoing, summary)
    assert [kind for _, _, kind in summary.messages] == ["commitment"]
    return list(
        await conn.fetch(
            "SELECT channel, language, subject, body FROM notifications"
            " WHERE kind = 'commitment' ORDER BY channel"
        )
    )


@pytest.mark.parametrize("policy_language", ["vi", "en"])
async def test_each_contact_reads_the_commitment_in_its_own_language(
    conn: asyncpg.Connection, policy_language: str
) -> None:
    await reference_sql.replace_contacts(
        conn,
        UNIT,
        "Chief",
        [
            Contact("email", "chief@test.invalid", "en"),
            Contact("webhook", "http://127.0.0.1:9/hook", "vi"),
            Contact("chat", "json://127.0.0.1:9/chat", None),
        ],
        "test",
    )
    await _commitment_due(conn)
    rows = {r["channel"]: r for r in await _check(conn, policy_language)}
    expected = {"chat": policy_language, "email": "en", "webhook": "vi"}
    assert {c: r["language"] for c, r in rows.items()} == expected
    for channel, language in expected.items():
        row = rows[channel]
        body = json.loads(row["body"])
        assert body["language"] == language
        assert body["subject"] == row["subject"]
        if language == "en":
            assert row["subject"].startswith("Commitment not met: ")
            assert "CCCD applications collected" in body["text"]
            assert "Cam kết" not in body["text"]
        else:
            assert row["subject"].startswith("Cam kết KHÔNG ĐẠT: ")
            assert "Thu nhận hồ sơ CCCD" in body["text"]
            assert "Commitment" not in body["text"]
        # what does not depend on the language is the same in every row
        assert body["commitment"]["met"] is False
        assert body["kind"] == "commitment"
