"""A failed attempt frees its delivery slot: the message goes back to `pending`, due after its
backoff, and any replica sends it then (docs/alerts.md, "Exactly once"). Until 6 December
2026 the retries slept inside the claimed task: four messages to one dead endpoint held
all four slots of a replica for their whole backoff, and every other chief's message
waited; and the retries gave up after about two minutes, with no way to send a failed
message again. Now the default retry window is hours, a permanent refusal (SMTP 5xx to the
recipient, HTTP 4xx but 408/429) fails at once, and `tiendo notifier redrive` sends failed
messages again, audited."""

import asyncio
import time
from datetime import UTC, datetime
from functools import partial

import asyncpg
import httpx
import pytest

from services.cli import main
from services.notifier.channels import Channel, EmailChannel, WebhookChannel
from services.notifier.outbox import retry_window_seconds
from services.notifier.repository import reference as reference_sql
from services.notifier.repository.reference import Contact
from services.notifier.settings import NotifierSettings
from tests.support.notifier import HttpReceiver, SmtpReceiver, outbox, queue, settled
from tests.support.stack import eventually
from tests.support.world import build_world

STARTS = datetime(2023, 5, 10, 3, tzinfo=UTC)


async def test_a_dead_endpoint_holds_no_slot_while_its_messages_wait(
    database: str, http_receiver: HttpReceiver
) -> None:
    """Four messages to a dead endpoint, four slots, and a fifth chief's message: it goes at
    once, while the four wait out their backoff as pending rows nobody holds."""
    await build_world(database, starts_at=STARTS)
    conn = await asyncpg.connect(database)
    http_receiver.fail_next["dead/"] = 10**6
    try:
        # the same recipient's messages: one contact, the dead endpoint (queued first)
        dead = http_receiver.url("dead/00010")
        await reference_sql.replace_contacts(
            conn, "00010", "Chief", [Contact("webhook", dead, None)], "test"
        )
        stuck = [await queue(conn, f"c1/00010/{n}/webhook", dead) for n in range(1, 5)]
        good_address = http_receiver.url("good/00007")
        await reference_sql.replace_contacts(
            conn, "00007", "Chief", [Contact("webhook", good_address, None)], "test"
        )
        good = await conn.fetchval(
            "INSERT INTO notifications (dedup_key, kind, recipient, channel, address, body,"
            " campaign_id, subject) VALUES ('c1/00007/1/webhook', 'firing', '00007',"
            " 'webhook', $1, '{}', 'c1', 's') RETURNING id",
            good_address,
        )
        async with httpx.AsyncClient(timeout=5) as client:
            channels: dict[str, Channel] = {"webhook": WebhookChannel(client, "test-secret")}
            started = time.monotonic()
            async with outbox(
                database,
                channels,
                max_attempts=5,
                backoff_seconds=30.0,
                backoff_max_seconds=60.0,
                concurrency=4,
            ):
                row = await eventually(lambda: settled(conn, good), timeout=20)
                took = time.monotonic() - started
                waiting = await conn.fetch(
                    "SELECT status, attempts, claimed_by, next_attempt_at > clock_timestamp()"
                    " AS later FROM notifications WHERE id = ANY ($1)",
                    stuck,
                )
        assert row["status"] == "delivered"
        # not after the dead endpoint's backoff (30 s): the moment a slot is polled
        assert took < 10, took
        assert [tuple(w) for w in waiting] == [("pending", 1, None, True)] * 4
        assert len(http_receiver.at("dead/")) == 4
    finally:
        await conn.close()


def test_the_default_retry_window_outlasts_an_outage_of_hours() -> None:
    """An SMTP server down for an hour (or a night) costs no message: the defaults retry
    for more than ten hours before a message is failed."""
    s = NotifierSettings(database_url="postgresql://unused/unused")
    window = retry_window_seconds(
        s.delivery_attempts, s.delivery_backoff_seconds, s.delivery_backoff_max_seconds
    )
    assert window >= 10 * 3600, window
    # and a message is still tried at least every 15 minutes once the server is back
    assert s.delivery_backoff_max_seconds <= 15 * 60


@pytest.mark.parametrize(
    ("status", "attempts", "outcome"),
    [(404, 1, "failed"), (410, 1, "failed"), (429, 3, "failed"), (408, 3, "failed")],
)
async def test_an_http_refusal_fails_at_once_and_a_request_to_come_back_is_retried(
    database: str, http_receiver: HttpReceiver, status: int, attempts: int, outcome: str
) -> None:
    await build_world(database, starts_at=STARTS)
    conn = await asyncpg.connect(database)
    address = http_receiver.url("refusing/00010")
    http_receiver.status["refusing/"] = status
    try:
        await reference_sql.replace_contacts(
            conn, "00010", "Chief", [Contact("webhook", address, None)], "test"
        )
        queued = await queue(conn, "c1/00010/1/webhook", address)
        async with httpx.AsyncClient(timeout=5) as client:
            channels: dict[str, Channel] = {"webhook": WebhookChannel(client, "test-secret")}
            async with outbox(
                database, channels, max_attempts=3, backoff_seconds=0.05, backoff_max_seconds=0.1
            ):
                row = await eventually(lambda: settled(conn, queued), timeout=15)
        assert (row["status"], row["attempts"], row["last_error"]) == (
            outcome,
            attempts,
            f"HTTP {status}",
        )
    finally:
        await conn.close()


async def test_an_smtp_5xx_to_the_recipient_fails_at_once_and_a_4xx_is_retried(
    database: str, smtp_receiver: SmtpReceiver
) -> None:
    await build_world(database, starts_at=STARTS)
    conn = await asyncpg.connect(database)
    smtp_receiver.refuse = {"gone": "550 5.1.1 no such user", "full": "452 4.2.2 mailbox full"}
    try:
        ids = {}
        for unit, address in (("00004", "gone@test.invalid"), ("00007", "full@test.invalid")):
            await reference_sql.replace_contacts(
                conn, unit, "Chief", [Contact("email", address, None)], "test"
            )
            ids[unit] = await conn.fetchval(
                "INSERT INTO notifications (dedup_key, kind, recipient, channel, address, body,"
                " campaign_id, subject) VALUES ($1, 'firing', $2, 'email', $3,"
                " '{\"text\": \"t\"}', 'c1', 's') RETURNING id",
                f"c1/{unit}/1/email",
                unit,
                address,
            )
        email = EmailChannel("127.0.0.1", smtp_receiver.port, "tiendo <alerts@tiendo.invalid>")
        async with outbox(
            database,
            {"email": email},
            max_attempts=3,
            backoff_seconds=0.05,
            backoff_max_seconds=0.1,
        ):
            gone = await eventually(lambda: settled(conn, ids["00004"]), timeout=15)
            full = await eventually(lambda: settled(conn, ids["00007"]), timeout=15)
        assert (gone["status"], gone["attempts"]) == ("failed", 1)
        assert "550" in gone["last_error"]
        assert (full["status"], full["attempts"]) == ("failed", 3)
        assert "452" in full["last_error"]
        assert smtp_receiver.refused.count("gone@test.invalid") == 1
        assert smtp_receiver.refused.count("full@test.invalid") == 3
    finally:
        await conn.close()


async def test_redrive_sends_failed_messages_again_and_is_audited(
    database: str, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outage is over: `tiendo notifier redrive` queues what failed during it again,
    each with the full number of attempts, written in the audit log with its actor."""
    await build_world(database, starts_at=STARTS)
    conn = await asyncpg.connect(database)
    address = http_receiver.url("hook/00010")
    http_receiver.fail_next["hook/"] = 2  # the outage: two attempts, both refused
    monkeypatch.setenv("TIENDO_NOTIFIER_DATABASE_URL", database)
    try:
        await reference_sql.replace_contacts(
            conn, "00010", "Chief", [Contact("webhook", address, None)], "test"
        )
        queued = await queue(conn, "c1/00010/1/webhook", address)
        async with httpx.AsyncClient(timeout=5) as client:
            channels: dict[str, Channel] = {"webhook": WebhookChannel(client, "test-secret")}
            async with outbox(
                database, channels, max_attempts=2, backoff_seconds=0.05, backoff_max_seconds=0.1
            ):
                row = await eventually(lambda: settled(conn, queued), timeout=15)
                assert (row["status"], row["attempts"]) == ("failed", 2)
                await asyncio.to_thread(
                    main, ["notifier", "redrive", "--id", str(queued), "--actor", "ops-duty"]
                )
                row = await eventually(lambda: _delivered(conn, queued), timeout=15)
        assert row["attempts"] == 3  # attempt numbers go on: 1 and 2 failed, 3 delivered
        audit = await conn.fetchrow(
            "SELECT actor, details FROM audit_log WHERE action = 'notifications.redrive'"
        )
        assert audit is not None
        assert audit["actor"] == "ops-duty"
        assert '"c1/00010/1/webhook"' in audit["details"]
        assert len(http_receiver.distinct("hook/")) == 1
    finally:
        await conn.close()


async def _delivered(conn: asyncpg.Connection, notification_id: int) -> asyncpg.Record:
    row = await settled(conn, notification_id)
    assert row["status"] == "delivered", row
    return row


async def test_redrive_takes_the_failed_since_a_moment_or_all(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await build_world(database, starts_at=STARTS)
    conn = await asyncpg.connect(database)
    monkeypatch.setenv("TIENDO_NOTIFIER_DATABASE_URL", database)
    try:
        for n, failed_at in ((1, "2026-01-01T08:00:00+07:00"), (2, "2026-01-01T10:00:00+07:00")):
            await conn.execute(
                "INSERT INTO notifications (dedup_key, kind, recipient, channel, address, body,"
                " campaign_id, subject, status, failed_at, attempts) VALUES ($1, 'firing',"
                " '00010', 'webhook', 'http://x.invalid/', '{}', 'c1', 's', 'failed',"
                " $2::text::timestamptz, 8)",
                f"c1/00010/{n}/webhook",
                failed_at,
            )
        await asyncio.to_thread(
            main, ["notifier", "redrive", "--since", "2026-01-01T09:00:00+07:00"]
        )
        rows = await conn.fetch(
            "SELECT dedup_key, status, attempts_before FROM notifications ORDER BY dedup_key"
        )
        assert [tuple(r) for r in rows] == [
            ("c1/00010/1/webhook", "failed", 0),
            ("c1/00010/2/webhook", "pending", 8),
        ]
        await asyncio.to_thread(main, ["notifier", "redrive", "--all"])
        assert (
            await conn.fetchval("SELECT count(*) FROM notifications WHERE status = 'pending'") == 2
        )
        with pytest.raises(SystemExit):  # a moment without an offset is refused
            await asyncio.to_thread(main, ["notifier", "redrive", "--since", "2026-01-01"])
    finally:
        await conn.close()


async def test_two_replicas_retrying_never_send_one_attempt_twice(
    database: str, http_receiver: HttpReceiver
) -> None:
    """Each retry is claimed anew, by whichever replica polls once it is due: across two
    replicas every message is sent once per attempt, its attempts numbered 1, 2, 3."""
    await build_world(database, starts_at=STARTS)
    conn = await asyncpg.connect(database)
    messages = 12
    try:
        ids = []
        for n in range(messages):
            unit = f"u{n:02d}"
            address = http_receiver.url(f"flaky/{n:02d}/")
            http_receiver.fail_next[f"flaky/{n:02d}/"] = 2  # two refusals, then taken
            await reference_sql.replace_contacts(
                conn, unit, None, [Contact("webhook", address, None)], "test"
            )
            ids.append(await queue(conn, f"c1/{unit}/1/webhook", address, recipient=unit))
        async with httpx.AsyncClient(timeout=5) as client:
            channels: dict[str, Channel] = {"webhook": WebhookChannel(client, "test-secret")}
            settings = {"max_attempts": 5, "backoff_seconds": 0.1, "backoff_max_seconds": 0.2}
            async with (
                outbox(database, channels, concurrency=3, replica="a", **settings),
                outbox(database, channels, concurrency=3, replica="b", **settings),
            ):
                for notification_id in ids:
                    row = await eventually(partial(settled, conn, notification_id), timeout=30)
                    assert row["status"] == "delivered"
        per_message = [len(http_receiver.at(f"flaky/{n:02d}/")) for n in range(messages)]
        assert per_message == [3] * messages
        attempts = await conn.fetch(
            "SELECT notification_id, array_agg(attempt ORDER BY attempt) AS numbers,"
            " array_agg(DISTINCT replica) AS replicas FROM delivery_attempts"
            " GROUP BY notification_id"
        )
        assert [list(a["numbers"]) for a in attempts] == [[1, 2, 3]] * messages
        assert {r for a in attempts for r in a["replicas"]} == {"a", "b"}
    finally:
        await conn.close()
