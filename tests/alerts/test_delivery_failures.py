"""A message a channel cannot send is retried with backoff, every attempt finished with its
real error, then marked failed and counted (SPEC §6): also when the channel raises instead
of answering, and for an address the contact rules refuse today but a row kept from before.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import ValidationError

from services.notifier.channels import (
    Channel,
    DeliveryResult,
    EmailChannel,
    Message,
    WebhookChannel,
)
from services.notifier.contacts import ContactIn
from services.notifier.metrics import NotifierMetrics
from services.notifier.outbox import Outbox
from services.notifier.repository import deliveries as delivery_sql
from tests.support.stack import eventually
from tiendo.addresses import ADDRESS_RULES, address_problem
from tiendo.database import create_pool

# Long next to the backoff (≤ 0.1 s) and the checks' patience: a message only the lease
# brings back (an attempt left unfinished) does not finish within a check.
LEASE_SECONDS = 60.0
PATIENCE_SECONDS = 15.0
ATTEMPTS = 3

BAD_ADDRESSES = [
    ("webhook", "http://host:abc/"),  # httpx.InvalidURL at send time
    ("webhook", "http://host:99999/"),
    ("webhook", "http://host:0/"),
    ("webhook", "ftp://host/x"),
    ("webhook", "http:///path"),
    ("webhook", "http://host/\x00"),
    ("webhook", "http://[::1/"),
    ("email", "chief@test.invalid\r\nBcc: all@test.invalid"),
    ("email", "chief@test.invalid\n"),  # `$` in the old pattern matched before it
    ("email", "chief@test.invalid\x00"),
    ("email", "a@test.invalid,b@test.invalid"),
    ("email", "Chief <chief@test.invalid>"),
    ("email", '"chief"@test.invalid'),
    ("email", "chief@.invalid"),
    ("email", "chief@test..invalid"),
    ("sms", "+84901234567\n"),
    ("chat", "json://host/\x01"),
    ("chat", "json://[::1/"),
]

GOOD_ADDRESSES = [
    ("webhook", "https://hooks.test.invalid/10"),
    ("webhook", "http://hooks.test.invalid:8080/in?unit=00010"),
    ("webhook", "http://[::1]:8080/"),
    ("email", "phucxa@test.invalid"),
    ("email", "chief.ward+alerts@hanoi-gov.test.invalid"),
    ("email", "trưởng@xã.vn"),
    ("sms", "+84901234567"),
    ("chat", "tgram://123456789:AAEabc-def/-1001234"),  # a token where a port would be
    ("chat", "json://hooks.test.invalid/chat"),
]


@pytest.mark.parametrize(("channel", "address"), BAD_ADDRESSES)
def test_an_address_the_channel_cannot_send_to_is_refused_before_it_is_stored(
    channel: str, address: str
) -> None:
    assert address_problem(channel, address) is not None
    with pytest.raises(ValidationError, match="address: not"):
        ContactIn(channel=channel, address=address)


@pytest.mark.parametrize(("channel", "address"), GOOD_ADDRESSES)
def test_an_address_the_channel_can_send_to_is_taken(channel: str, address: str) -> None:
    assert address_problem(channel, address) is None
    assert ContactIn(channel=channel, address=address).address == address


def test_the_address_rules_keep_their_shape_for_other_services() -> None:
    # The aggregator checks chiefs' contacts with the same rules: (description, predicate).
    assert set(ADDRESS_RULES) >= {"email", "sms", "webhook", "chat"}
    for what, fits in ADDRESS_RULES.values():
        assert isinstance(what, str)
        assert fits("x") in (True, False)


def _message(address: str) -> Message:
    return Message("c1/00010/1/x", address, "subject", "text", b"{}", ("secret",))


async def test_the_webhook_channel_answers_a_url_httpx_cannot_parse_with_a_failure() -> None:
    async with httpx.AsyncClient() as client:
        result = await WebhookChannel(client, None).send(_message("http://host:abc/"))
    assert result == DeliveryResult(False, "InvalidURL: Invalid port: 'abc'")


async def test_the_email_channel_answers_an_address_with_a_line_break_with_a_failure() -> None:
    # Refused while composing, before any connection (port 9: nothing listens there).
    channel = EmailChannel("127.0.0.1", 9, "tiendo <alerts@tiendo.invalid>", timeout=2)
    result = await channel.send(_message("chief@test.invalid\r\nBcc: all@test.invalid"))
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("ValueError: ")
    assert "linefeed or carriage return" in result.error


async def _queue(conn: asyncpg.Connection, channel: str, address: str) -> int:
    # the chief's contact (each attempt sends to it), kept from before the rules refused it:
    # written straight to the table, as a row of then would be
    await conn.execute(
        "INSERT INTO contacts (unit, channel, address) VALUES ('00010', $1, $2)", channel, address
    )
    notification_id = await delivery_sql.insert_notification(
        conn,
        dedup_key=f"c1/00010/1/{channel}",
        kind="firing",
        recipient="00010",
        channel=channel,
        address=address,
        body={"subject": "s", "text": "t", "chat": "t"},
        group_id=None,
        campaign_id="c1",
        subject="s",
        language="vi",
        alert_ids=[],
    )
    assert notification_id is not None
    return notification_id


@contextlib.asynccontextmanager
async def _outbox(database: str, channels: dict[str, Channel]) -> AsyncIterator[Outbox]:
    pool = await create_pool(database, max_size=4)
    outbox = Outbox(
        pool,
        channels,
        NotifierMetrics(),
        max_attempts=ATTEMPTS,
        poll_seconds=0.05,
        backoff_seconds=0.05,
        backoff_max_seconds=0.1,
        lease_seconds=LEASE_SECONDS,
    )
    task = asyncio.create_task(outbox.run())
    try:
        yield outbox
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.close()


def _counted(outbox: Outbox, channel: str, result: str) -> float:
    value = outbox._metrics.registry.get_sample_value(
        "tiendo_notifier_notifications_total", {"channel": channel, "result": result}
    )
    return value or 0.0


async def _settled(conn: asyncpg.Connection, notification_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(
        "SELECT status, attempts, last_error FROM notifications WHERE id = $1", notification_id
    )
    assert row is not None
    assert row["status"] in ("delivered", "failed"), row
    return dict(row)


async def _attempts(conn: asyncpg.Connection, notification_id: int) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        "SELECT attempt, finished_at IS NOT NULL AS finished, ok, error FROM delivery_attempts"
        " WHERE notification_id = $1 ORDER BY attempt",
        notification_id,
    )
    return [tuple(r) for r in rows]


async def _fails_every_attempt_with(
    database: str, channel_name: str, channel: Channel, address: str, error: str
) -> None:
    conn = await asyncpg.connect(database)
    try:
        notification_id = await _queue(conn, channel_name, address)
        async with _outbox(database, {channel_name: channel}) as outbox:
            row = await eventually(
                lambda: _settled(conn, notification_id), timeout=PATIENCE_SECONDS
            )
            assert row == {"status": "failed", "attempts": ATTEMPTS, "last_error": error}
            assert await _attempts(conn, notification_id) == [
                (n, True, False, error) for n in range(1, ATTEMPTS + 1)
            ]
            # each attempt counted once, the last as the message's failure
            assert _counted(outbox, channel_name, "retry") == ATTEMPTS - 1
            assert _counted(outbox, channel_name, "failed") == 1
    finally:
        await conn.close()


async def test_a_webhook_url_stored_before_the_rules_refused_it_fails_with_its_error(
    database: str,
) -> None:
    async with httpx.AsyncClient() as client:
        await _fails_every_attempt_with(
            database,
            "webhook",
            WebhookChannel(client, "secret"),
            "http://host:abc/",
            "InvalidURL: Invalid port: 'abc'",
        )


class Raising:
    """A channel with a bug, or a library that raises what its docs do not list."""

    def __init__(self, exc: Exception, times: int = 1_000) -> None:
        self._exc = exc
        self._times = times
        self.calls = 0

    async def send(self, message: Message) -> DeliveryResult:
        self.calls += 1
        if self.calls <= self._times:
            raise self._exc
        return DeliveryResult(True)


async def test_whatever_a_channel_raises_is_the_attempts_failure_and_the_message_fails(
    database: str,
) -> None:
    await _fails_every_attempt_with(
        database, "email", Raising(KeyError("boom")), "chief@test.invalid", "KeyError: 'boom'"
    )


async def test_a_channel_that_raised_once_is_retried_with_backoff_and_delivers(
    database: str,
) -> None:
    conn = await asyncpg.connect(database)
    try:
        notification_id = await _queue(conn, "sms", "+84901234567")
        channel = Raising(RuntimeError("modem reset"), times=1)
        async with _outbox(database, {"sms": channel}) as outbox:
            row = await eventually(
                lambda: _settled(conn, notification_id), timeout=PATIENCE_SECONDS
            )
            assert row["status"] == "delivered"
            assert await _attempts(conn, notification_id) == [
                (1, True, False, "RuntimeError: modem reset"),
                (2, True, True, None),
            ]
            assert _counted(outbox, "sms", "retry") == 1
            assert _counted(outbox, "sms", "delivered") == 1
    finally:
        await conn.close()


async def test_a_chat_url_in_a_raised_error_is_redacted(database: str) -> None:
    address = "tgram://123456789:AAEsecret-token/-1001234"
    await _fails_every_attempt_with(
        database,
        "chat",
        Raising(ValueError(f"cannot reach {address}")),
        address,
        "ValueError: cannot reach tgram://***",
    )


class Hanging:
    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def send(self, message: Message) -> DeliveryResult:
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("never woken")


async def test_a_stopping_replica_still_stops_mid_send_and_hands_the_message_back(
    database: str,
) -> None:
    # The outbox takes any Exception from a channel as a failed attempt; cancellation is
    # not one, so stopping does not turn into an attempt's failure.
    conn = await asyncpg.connect(database)
    try:
        notification_id = await _queue(conn, "webhook", "https://hooks.test.invalid/10")
        channel = Hanging()
        async with _outbox(database, {"webhook": channel}):
            await asyncio.wait_for(channel.started.wait(), PATIENCE_SECONDS)
        row = await conn.fetchrow(
            "SELECT status, claimed_by FROM notifications WHERE id = $1", notification_id
        )
        assert row is not None
        assert dict(row) == {"status": "pending", "claimed_by": None}
        assert await _attempts(conn, notification_id) == [(1, False, None, None)]
    finally:
        await conn.close()
