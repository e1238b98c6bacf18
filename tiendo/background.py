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
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # we are being stopped
            # Not ours: aiokafka's consumer.stop() raises its fetch task's CancelledError when
            # it is stopped while backing off from an unreachable broker (as the loop's
            # `finally` does after a database error). Taken for a stop, it ended the loop
            # without a word, and the service stopped consuming while /readyz said ready.
            log.error("background_task_failed", task=name, error=repr(exc), stray_cancel=True)
            await asyncio.sleep(pause)
