"""Background loops of the services (consumers, clocks, outboxes), kept alive."""

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
from aiokafka.errors import KafkaError

from tiendo.logs import get_logger

log = get_logger(__name__)

# Failures of the outside world a loop survives: the broker or the database going away.
# Anything else is a bug and ends the loop loudly instead of spinning on it.
TRANSIENT = (KafkaError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def keep_running(name: str, loop: Callable[[], Awaitable[None]], pause: float = 2.0) -> None:
    """Run `loop` until it returns; after a transient failure log it and start it again."""
    while True:
        try:
            await loop()
            return
        except TRANSIENT as exc:
            log.error("background_task_failed", task=name, error=repr(exc))
            await asyncio.sleep(pause)
