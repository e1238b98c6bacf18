"""Delivers queued notifications, at least once per channel, with every attempt logged.

A replica claims due messages (`FOR UPDATE SKIP LOCKED`, so two replicas never take the same
one) and holds each for a lease on the database's clock. Each attempt is first written down
(attempt number, replica, the address it goes to, start) in its own transaction, then sent,
then its result written. A claim is one attempt: a failed one writes the message back as
`pending`, due again after an exponential backoff, and lets it go, so a dead endpoint holds
no delivery slot while it waits and every other chief's messages go meanwhile; the next
attempt is whichever replica's that polls once it is due. After the configured attempts
(hours of retries by default), or at once when the receiver refuses the message for good,
the message is `failed` and counted; `tiendo notifier redrive` sends it again.

Every attempt sends to the recipient's contact on the message's channel as it is then (the
body was decided when the message was, the address is looked up each time): a contact fixed
while the message waited is used by the next attempt, one removed fails the message with
that reason. The operators' copy (the fallback webhook) goes to the fallback URL.

A replica killed mid-send leaves the message `sending` with an unfinished attempt: when the
lease runs out another replica takes it and sends it again under the same delivery id,
which the receiver uses to drop the copy if the first send had reached it (docs/alerts.md,
"Exactly once")."""

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import asyncpg

from services.notifier.channels import Channel, DeliveryResult, Message, error_text
from services.notifier.metrics import NotifierMetrics
from services.notifier.privacy import logged_text
from services.notifier.repository import deliveries as delivery_sql
from services.notifier.repository import secrets as secret_sql
from services.notifier.repository.deliveries import Claimed
from tiendo.database import Connection
from tiendo.logs import get_logger

log = get_logger(__name__)


def replica_name() -> str:
    """This process's name in claims and the attempt log (unique per app instance)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def backoff_seconds(attempt: int, first: float, longest: float) -> float:
    """How long a message waits after its `attempt`-th failed attempt (1: the first since
    it was queued or redriven): `first`, doubling each attempt, at most `longest`."""
    # the exponent bounded: 2**60 seconds is past any `longest`, and a float never overflows
    return float(min(first * 2.0 ** min(max(attempt, 1) - 1, 60), longest))


def retry_window_seconds(attempts: int, first: float, longest: float) -> float:
    """From a message's first attempt to its last when every one fails: the sum of the
    waits between its `attempts` (the settings' window: docs/alerts.md)."""
    return sum(backoff_seconds(n, first, longest) for n in range(1, attempts))


class Outbox:
    def __init__(
        self,
        pool: asyncpg.Pool,
        channels: dict[str, Channel],
        metrics: NotifierMetrics,
        *,
        max_attempts: int,
        poll_seconds: float,
        backoff_seconds: float = 2.0,
        backoff_max_seconds: float = 900.0,
        timeout_seconds: float = 10.0,
        lease_seconds: float = 120.0,
        concurrency: int = 8,
        replica: str | None = None,
        fallback_webhook: str | None = None,
    ) -> None:
        self._pool = pool
        self._channels = channels
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._poll = poll_seconds
        self._backoff = backoff_seconds
        self._backoff_max = backoff_max_seconds
        self._timeout = timeout_seconds
        self._lease = timedelta(seconds=lease_seconds)
        self._concurrency = concurrency
        # where the operators' copies go (TIENDO_NOTIFIER_WEBHOOK_URL), read as configured now
        self._fallback = fallback_webhook
        self.replica = replica or replica_name()
        self._inflight: dict[int, asyncio.Task[None]] = {}

    async def run(self) -> None:
        try:
            while True:
                await self._claim_and_start()
                await asyncio.sleep(self._poll)
        finally:
            await self._release()

    async def _claim(self, limit: int) -> list[Claimed]:
        if limit <= 0:
            return []
        async with self._pool.acquire() as conn:
            return await delivery_sql.claim(conn, self.replica, self._lease, limit)

    async def _claim_and_start(self) -> None:
        for row in await self._claim(self._concurrency - len(self._inflight)):
            task = asyncio.create_task(self._guarded(row))
            self._inflight[row.id] = task
            task.add_done_callback(self._forget(row.id))

    def _forget(self, notification_id: int) -> Callable[[asyncio.Task[None]], None]:
        def done(_: asyncio.Task[None]) -> None:
            self._inflight.pop(notification_id, None)

        return done

    async def _guarded(self, row: Claimed) -> None:
        try:
            await self._deliver(row)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The database went away mid-delivery: the lease runs out and any replica
            # resumes the message, so log it and let it go.
            self._metrics.notifications.labels(row.channel, "interrupted").inc()
            log.error("delivery_interrupted", id=row.id, error=repr(exc))
        except Exception as exc:
            # A bug of ours (a channel's errors are the attempt's, in `_attempt`): the same
            # recovery, the lease runs out and the message is resumed, and no task dies with
            # its exception unread ("Task exception was never retrieved").
            self._metrics.notifications.labels(row.channel, "interrupted").inc()
            error = error_text(exc, row.channel, row.address)
            log.error(
                "delivery_crashed", id=row.id, error=logged_text(row.channel, row.address, error)
            )

    async def _release(self) -> None:
        ids = list(self._inflight)
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if ids:
            async with self._pool.acquire() as conn:
                await delivery_sql.release(conn, self.replica, ids)

    async def _deliver(self, row: Claimed) -> None:
        """One attempt at the message, then the slot is free: a failure is written back to
        be retried later (or fails the message), never waited out here."""
        channel = self._channels.get(row.channel)
        if channel is None:
            await self._fail(row, f"channel {row.channel!r} is not configured")
            return
        if row.attempts_counted >= self._max_attempts:
            # taken over from a replica that died after its last attempt
            await self._fail(row, row.last_error or "no attempts left")
            return
        body = row.body
        message = Message(
            delivery_id=row.delivery_id,
            address=row.address,
            subject=row.subject or str(body.get("subject", "")),
            text=str(body.get("chat" if row.channel == "chat" else "text", "")),
            body=json.dumps(body, ensure_ascii=False, sort_keys=True).encode(),
        )
        await self._attempt(row, message, channel)

    async def _address(self, conn: Connection, row: Claimed) -> str | None:
        """Where this attempt sends: the operators' fallback webhook for their copy, else
        the recipient's contact on the row's channel as it is now; None: nowhere any more."""
        if row.fallback:
            return self._fallback
        return await delivery_sql.contact_address(conn, row.recipient, row.channel)

    def _gone(self, row: Claimed) -> str:
        """Why a message has nowhere to go, as `last_error` says it."""
        if row.fallback:
            return (
                "the fallback webhook (TIENDO_NOTIFIER_WEBHOOK_URL) is no longer configured: "
                "nothing to send the operators' copy to"
            )
        return (
            f"unit {row.recipient} has no {row.channel} contact any more (removed while the "
            "message waited): nothing to send to; set one and run `tiendo notifier redrive`"
        )

    async def _attempt(self, row: Claimed, message: Message, channel: Channel) -> None:
        """One attempt, written down before and after, to the address of now. Nothing is
        sent when this replica lost the message (its lease ran out and another took it, or
        it was delivered meanwhile), nor when the recipient's contact is gone (failed)."""
        async with self._pool.acquire() as conn:
            address = await self._address(conn, row)
            if address is None:
                started = None
            else:
                started = await delivery_sql.start_attempt(
                    conn, row.id, self.replica, self._lease, address
                )
            # Read at every attempt: a rotation or a retirement applies to the next send.
            keys = await secret_sql.signing_secrets(conn, address) if started and address else ()
        if address is None:
            await self._fail(row, self._gone(row))
            return
        if started is None:
            log.warning("delivery_lease_lost", id=row.id, replica=self.replica)
            return
        row = dataclasses.replace(row, address=address)
        t0 = time.perf_counter()
        try:
            result = await asyncio.wait_for(
                channel.send(dataclasses.replace(message, address=address, secrets=keys)),
                self._timeout,
            )
        except TimeoutError:
            result = DeliveryResult(False, f"timeout after {self._timeout} s")
        except Exception as exc:
            # A channel is a boundary (a library, an address stored before the contact rules
            # refused its kind): whatever it raises is this attempt's failure, finished,
            # retried with backoff and in the end `failed`, never an unfinished attempt left
            # to the lease. Cancellation is no Exception: a stopping replica still stops.
            result = DeliveryResult(False, error_text(exc, row.channel, address))
        self._metrics.delivery_seconds.labels(row.channel).observe(time.perf_counter() - t0)
        counted = started.number - row.attempts_before
        final = not result.ok and (result.permanent or counted >= self._max_attempts)
        wait = backoff_seconds(counted, self._backoff, self._backoff_max)
        async with self._pool.acquire() as conn, conn.transaction():
            await delivery_sql.finish_attempt(conn, started.id, result.ok, result.error)
            if result.ok:
                await delivery_sql.mark_delivered(conn, row.id)
            elif final:
                await delivery_sql.mark_failed(conn, row.id, result.error or "failed", self.replica)
            else:
                await delivery_sql.retry_later(
                    conn, row.id, result.error, timedelta(seconds=wait), self.replica
                )
        # each attempt counted once: its last failure is the message's `failed`, not a
        # `retry` that never comes (counted as both, a failed message was two attempts)
        outcome = "delivered" if result.ok else "failed" if final else "retry"
        self._metrics.notifications.labels(row.channel, outcome).inc()
        log.info(
            "notification_delivered" if result.ok else "notification_attempt_failed",
            id=row.id,
            delivery_id=row.delivery_id,
            kind=row.kind,
            channel=row.channel,
            attempt=started.number,
            retry_in=None if result.ok or final else wait,
            error=logged_text(row.channel, address, result.error),
        )
        if final:
            self._failed(row, result.error or "failed")

    async def _fail(self, row: Claimed, error: str) -> None:
        """Give a message up without an attempt (its channel gone, its contact removed, no
        attempts left): counted `failed` as a last attempt would be."""
        async with self._pool.acquire() as conn:
            await delivery_sql.mark_failed(conn, row.id, error, self.replica)
        self._metrics.notifications.labels(row.channel, "failed").inc()
        self._failed(row, error)

    def _failed(self, row: Claimed, error: str) -> None:
        """Log a message given up on (marked failed and counted by the caller)."""
        log.error(
            "notification_failed",
            id=row.id,
            delivery_id=row.delivery_id,
            channel=row.channel,
            error=logged_text(row.channel, row.address, error),
        )
