"""Delivers queued notifications: claimed with SKIP LOCKED, retried with backoff, every
attempt recorded, failed after the configured attempts (never dropped silently)."""

import asyncio
import json

import asyncpg

from services.notifier import repository
from services.notifier.channels import Channel, Message
from services.notifier.metrics import NotifierMetrics
from tiendo.clock import Clock
from tiendo.logs import get_logger

log = get_logger(__name__)


class Outbox:
    def __init__(
        self,
        pool: asyncpg.Pool,
        channels: dict[str, Channel],
        clock: Clock,
        metrics: NotifierMetrics,
        max_attempts: int,
        poll_seconds: float,
    ) -> None:
        self._pool = pool
        self._channels = channels
        self._clock = clock
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._poll = poll_seconds

    async def deliver_due(self, limit: int = 50) -> int:
        """Send what is due now; the row stays locked while it is sent (one sender only)."""
        sent = 0
        async with self._pool.acquire() as conn, conn.transaction():
            for row in await repository.claim_due(conn, self._clock.now(), limit):
                channel = self._channels[row["channel"]]
                body = json.loads(row["body"]) if isinstance(row["body"], str) else row["body"]
                result = await channel.send(
                    Message(
                        address=row["address"],
                        body=json.dumps(body, ensure_ascii=False, sort_keys=True).encode(),
                    )
                )
                now = self._clock.now()
                if result.ok:
                    await repository.mark_delivered(conn, row["id"], now)
                    self._metrics.notifications.labels(row["channel"], "delivered").inc()
                    log.info(
                        "notification_delivered",
                        id=row["id"],
                        kind=row["kind"],
                        channel=row["channel"],
                    )
                    sent += 1
                    continue
                status = await repository.mark_retry(
                    conn,
                    row["id"],
                    now + repository.backoff(row["attempts"] + 1),
                    result.error or "failed",
                    self._max_attempts,
                )
                self._metrics.notifications.labels(
                    row["channel"], "failed" if status == "failed" else "retry"
                ).inc()
                log.warning(
                    "notification_attempt_failed",
                    id=row["id"],
                    error=result.error,
                    attempts=row["attempts"] + 1,
                    status=status,
                )
        return sent

    async def run(self) -> None:
        while True:
            await self.deliver_due()
            await asyncio.sleep(self._poll)
