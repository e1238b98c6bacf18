"""Each attempt goes to the recipient's contact as it is then (docs/alerts.md, "Exactly once"):
a contact fixed while its message waits is used by the next attempt, and the attempt log
says where each attempt went; a contact removed fails the message with that reason; the
operators' copy goes to the fallback webhook as configured. Until 6 December 2026 every
retry went to the address the message was queued with, and a chief whose dead webhook an
administrator fixed never got the message."""

from datetime import UTC, datetime

import asyncpg
import httpx

from services.notifier.channels import Channel, WebhookChannel
from services.notifier.privacy import shown_notification
from services.notifier.repository import reference as reference_sql
from services.notifier.repository.reference import Contact
from tests.support.notifier import HttpReceiver, outbox, queue, settled
from tests.support.stack import eventually
from tests.support.world import build_world

STARTS = datetime(2023, 5, 10, 3, tzinfo=UTC)
CHIEF = "00010"


async def attempts(conn: asyncpg.Connection, notification_id: int) -> list[tuple[object, ...]]:
    rows = await conn.fetch(
        "SELECT attempt, address, ok FROM delivery_attempts WHERE notification_id = $1"
        " ORDER BY attempt",
        notification_id,
    )
    return [tuple(r) for r in rows]


async def test_a_contact_fixed_while_its_message_waits_gets_the_next_attempt(
    database: str, http_receiver: HttpReceiver
) -> None:
    await build_world(database, starts_at=STARTS)
    conn = await asyncpg.connect(database)
    old, new = http_receiver.url(f"old/{CHIEF}"), http_receiver.url(f"new/{CHIEF}")
    http_receiver.fail_next["old/"] = 1  # the old endpoint answers 503: why it is fixed
    try:
        await reference_sql.replace_contacts(
            conn, CHIEF, "Chief", [Contact("webhook", old, None)], "test"
        )
        first = await queue(conn, f"c1/{CHIEF}/1/webhook", old)
        async with httpx.AsyncClient(timeout=5) as client:
            channels: dict[str, Channel] = {"webhook": WebhookChannel(client, "test-secret")}
            # long backoff: the retry waits while the administrator fixes the contact
            async with outbox(
                database, channels, max_attempts=5, backoff_seconds=1.0, backoff_max_seconds=1.0
            ):
                await eventually(lambda: _attempted(conn, first), timeout=15)
                await reference_sql.replace_contacts(
                    conn, CHIEF, "Chief", [Contact("webhook", new, None)], "test"
                )
                row = await eventually(lambda: settled(conn, first), timeout=20)
        assert (row["status"], row["address"]) == ("delivered", new)
        assert await attempts(conn, first) == [(1, old, False), (2, new, True)]
        assert len(http_receiver.at("old/")) == 1
        assert [r.delivery_id for r in http_receiver.at("new/")] == [f"c1/{CHIEF}/1/webhook"]
    finally:
        await conn.close()


async def _attempted(conn: asyncpg.Connection, notification_id: int) -> None:
    found = await conn.fetchval(
        "SELECT count(*) FROM delivery_attempts WHERE notification_id = $1 AND ok = false",
        notification_id,
    )
    assert found == 1


async def test_a_contact_removed_while_its_message_waits_fails_it_with_the_reason(
    database: str, http_receiver: HttpReceiver
) -> None:
    await build_world(database, starts_at=STARTS)
    conn = await asyncpg.connect(database)
    old = http_receiver.url(f"old/{CHIEF}")
    try:
        await reference_sql.replace_contacts(
            conn, CHIEF, "Chief", [Contact("webhook", old, None)], "test"
        )
        gone = await queue(conn, f"c1/{CHIEF}/1/webhook", old)
        await reference_sql.replace_contacts(conn, CHIEF, "Chief", [], "test")
        async with httpx.AsyncClient(timeout=5) as client:
            channels: dict[str, Channel] = {"webhook": WebhookChannel(client, "test-secret")}
            async with outbox(
                database, channels, max_attempts=3, backoff_seconds=0.05, backoff_max_seconds=0.1
            ):
                row = await eventually(lambda: settled(conn, gone), timeout=15)
        assert row["status"] == "failed"
        assert row["attempts"] == 0
        assert "has no webhook contact any more" in row["last_error"]
        assert http_receiver.received == []
    finally:
        await conn.close()


async def test_the_operators_copy_goes_to_the_fallback_webhook_as_configured(
    database: str, http_receiver: HttpReceiver
) -> None:
    """A copy queued for the fallback webhook is not the chief's: it goes to the fallback
    URL of now, not to a webhook the chief gets later (its body has no link of the chief's),
    and fails when no fallback is configured any more."""
    await build_world(database, starts_at=STARTS)
    conn = await asyncpg.connect(database)
    ops, chiefs = http_receiver.url("ops/new"), http_receiver.url(f"hook/{CHIEF}")
    try:
        old_ops = http_receiver.url("ops/old")
        copy = await queue(conn, f"c1/{CHIEF}/1/webhook", old_ops, fallback=True)
        await reference_sql.replace_contacts(
            conn, CHIEF, "Chief", [Contact("webhook", chiefs, None)], "test"
        )
        async with httpx.AsyncClient(timeout=5) as client:
            channels: dict[str, Channel] = {"webhook": WebhookChannel(client, "test-secret")}
            async with outbox(
                database, channels, max_attempts=2, backoff_seconds=0.05, fallback_webhook=ops
            ):
                row = await eventually(lambda: settled(conn, copy), timeout=15)
            assert (row["status"], row["address"]) == ("delivered", ops)
            assert http_receiver.at("hook/") == []
            # the fallback setting removed (an outbox without one) while a copy waits
            stranded = await queue(conn, f"c1/{CHIEF}/2/webhook", ops, fallback=True)
            async with outbox(database, channels, max_attempts=2, backoff_seconds=0.05):
                row = await eventually(lambda: settled(conn, stranded), timeout=15)
        assert row["status"] == "failed"
        assert "fallback webhook" in row["last_error"]
    finally:
        await conn.close()


def test_each_attempts_address_is_shown_as_the_rows_is() -> None:
    """The delivery log masks each attempt's own address, and the error quoting it, for a
    reader: an earlier attempt went to the contact of its moment, not the row's latest."""
    row = {
        "channel": "email",
        "address": "new.chief@test.invalid",
        "last_error": None,
        "attempt_log": [
            {
                "attempt": 1,
                "address": "old.chief@test.invalid",
                "error": "550 old.chief@test.invalid",
            },
            {"attempt": 2, "address": "new.chief@test.invalid", "error": None},
        ],
    }
    shown = shown_notification(row, admin=False)
    assert [(a["address"], a["error"]) for a in shown["attempt_log"]] == [
        ("o***@test.invalid", "550 o***@test.invalid"),
        ("n***@test.invalid", None),
    ]
