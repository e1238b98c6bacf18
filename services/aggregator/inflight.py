"""The consumer's batch in flight: the next batch is fetched and decoded while PostgreSQL
applies this one (the live consumer and the rebuild both)."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any


class InFlight:
    """At most one batch (a round's parts) in the background, so that the next batch is
    fetched and decoded while PostgreSQL applies this one. A partition's transactions still
    commit one after another, in fetch order.

    A batch is two parts: what must be over before its partitions change hands (the
    transaction, and the feed it publishes), and what need not (`then`: the offsets
    reported to the broker for lag tooling). A rebalance waits for the first part only: a
    wait on the broker inside it waited on the rebalance itself, when it came after the
    broker's restart."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._settled: asyncio.Task[None] | None = None

    async def submit(
        self,
        apply: Coroutine[Any, Any, None],
        then: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Wait for the previous batch (raising its error), then start `apply`, and `then`
        after it."""
        try:
            await self.wait()
        except BaseException:
            apply.close()  # never started: nothing of it ran
            raise
        settled = asyncio.create_task(apply)
        self._settled = settled
        self._task = asyncio.create_task(_after(settled, then))

    async def wait(self) -> None:
        task, self._task, self._settled = self._task, None, None
        if task is not None:
            await task

    async def settle(self) -> None:
        """Wait for the running transaction (not its `then`) without taking its outcome
        (for a rebalance callback: an error still reaches the loop at its next `wait`)."""
        if self._settled is not None:
            await asyncio.wait({self._settled})

    async def cancel(self) -> None:
        task, self._task, self._settled = self._task, None, None
        if task is not None:
            task.cancel()  # and, through it, the transaction it awaits
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _after(settled: asyncio.Task[None], then: Callable[[], Awaitable[None]] | None) -> None:
    await settled
    if then is not None:
        await then()
