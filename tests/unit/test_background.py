"""keep_running restarts a loop after a transient failure, also after a CancelledError that
is not its own (a library's inner task), and still stops when it is cancelled itself."""

import asyncio

import pytest

from tiendo.background import keep_running


async def test_a_stray_cancelled_error_restarts_the_loop_instead_of_ending_it() -> None:
    runs = 0

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            inner = asyncio.ensure_future(asyncio.sleep(10))
            inner.cancel()
            await inner  # raises CancelledError, though nobody cancelled this loop

    await asyncio.wait_for(keep_running("test", loop, pause=0.01), timeout=5)
    assert runs == 2


async def test_cancelling_the_task_still_stops_it() -> None:
    started = asyncio.Event()

    async def loop() -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.create_task(keep_running("test", loop, pause=0.01))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
