"""Services and heavy commands run on uvloop (asyncio.run would build the stdlib loop)."""

import asyncio

import uvloop

from tiendo import eventloop


def test_run_returns_the_result_on_a_uvloop_loop() -> None:
    async def which() -> type[asyncio.AbstractEventLoop]:
        return type(asyncio.get_running_loop())

    assert eventloop.run(which()) is uvloop.Loop
