"""A chief's digest lists and counts exactly the alerts the chief's messages list
(docs/alerts.md, "Digests"): the planner's own selection, so an alert inhibited by a higher
rule or silenced is left out, and an escalated alert of a unit below is in. Until 6 December
2026 the digest counted every firing alert of the chief's own unit: a ward told only that
it was "behind" read "3 alerts firing", and a district chief told of its ward's escalated
alert had it left out of the count."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from services.notifier.channels import Channel, WebhookChannel
from services.notifier.repository import reference as reference_sql
from tests.support.notifier import (
    SECRET,
    HttpReceiver,
    outbox,
    policy_evaluator,
    tree_with_contacts,
)
from tests.support.stack import eventually
from tests.support.world import build_world
from tiendo.database import create_pool

STARTS = datetime(2023, 5, 10, 3, tzinfo=UTC)  # 10:00 local
POLICY = {
    "at_risk": {"enabled": True, "for_seconds": 6 * 3600},
    "bottom_rank": {"enabled": False},
    "group_wait_seconds": 0,
    "repeat_interval_seconds": 86400,
    "escalate_after_seconds": 3600,
    "escalation_levels": 1,
    "digest_times": ["17:00"],
}


async def test_the_digest_lists_what_the_chiefs_messages_list(
    database: str, http_receiver: HttpReceiver
) -> None:
    await build_world(
        database, starts_at=STARTS, units=tree_with_contacts(http_receiver, chat=False)
    )
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=4)
    try:
        evaluator = await policy_evaluator(conn, database, "c1", POLICY)
        # muting `behind` of 00007 leaves its `at_risk` told (a silenced rule outranks nothing)
        await reference_sql.create_silence(
            conn,
            campaign="c1",
            unit="00007",
            indicator=None,
            rule="behind",
            starts_at=STARTS,
            ends_at=STARTS + timedelta(days=30),
            created_by="test",
            comment="",
            actor="test",
        )
        # every ward behind from the start (nothing reported); `at_risk` fires at 16:01
        # under `behind`, `behind` escalates to the district after an hour
        for at in (1, 61, 62, 361, 362, 421):
            await evaluator.evaluate_at(pool, STARTS + timedelta(minutes=at))
        rows = await conn.fetch(
            "SELECT recipient, kind, body FROM notifications WHERE channel = 'webhook' ORDER BY id"
        )
        last_message: dict[str, dict[str, Any]] = {}
        digests: dict[str, dict[str, Any]] = {}
        for r in rows:
            body = json.loads(r["body"])
            (digests if r["kind"] == "digest" else last_message)[r["recipient"]] = body
        assert set(digests) == {"01", "001", "002", "00004", "00007", "00010"}
        for code, digest in digests.items():
            told = [a["alert_id"] for a in last_message[code]["firing"]]
            listed = [a["alert_id"] for a in digest["firing"]]
            assert listed == told, code
            assert digest["firing_count"] == len(told), code

        def rules(code: str) -> list[tuple[str, str, int]]:
            return [(a["unit"], a["rule"], a["escalation_level"]) for a in digests[code]["firing"]]

        # two alerts fire on the ward (`stale` only after 12 h); its chief is told of one
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM alerts WHERE unit = '00010' AND state = 'firing'"
            )
            == 2
        )  # behind, at_risk (stale holds after 12 h)
        assert rules("00010") == [("00010", "behind", 0)]
        assert rules("00007") == [("00007", "at_risk", 0)]
        # the district: its own `behind`, and its ward's, escalated
        assert sorted(rules("002")) == [("00010", "behind", 1), ("002", "behind", 0)]
        digest = digests["002"]
        assert "Cảnh báo đang hiệu lực: 2." in str(digest["text"])
        assert "Phường Hàng Buồm (00010)" in str(digest["text"])

        # and what the chief's webhook receives says so
        async with httpx.AsyncClient(timeout=5) as client:
            channels: dict[str, Channel] = {"webhook": WebhookChannel(client, SECRET)}
            async with outbox(database, channels, max_attempts=2, backoff_seconds=0.05):

                async def delivered() -> None:
                    got = [r.json() for r in http_receiver.at("hook/002")]
                    assert any(b["kind"] == "digest" for b in got)

                await eventually(delivered, timeout=15)
        received = next(
            r.json() for r in http_receiver.at("hook/002") if r.json()["kind"] == "digest"
        )
        assert received["firing_count"] == 2
    finally:
        await pool.close()
        await conn.close()
