"""The event loop every tiendo process runs on: uvloop.

`asyncio.run` always builds the standard library's loop, whatever uvicorn's `loop` setting
says, so services and the heavy CLI commands start theirs here.
"""

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on a uvloop loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
