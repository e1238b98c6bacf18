"""Pausing a server process (SIGSTOP) for a test that needs it to stop answering."""

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def all_threads_stopped(pid: int) -> bool:
    """Whether every thread of `pid` is in the stopped state (`T` in /proc)."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            # the state follows the command name, which is in parentheses and may hold spaces
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # a thread that ended meanwhile
    return bool(states) and all(s in ("T", "t") for s in states)


@contextmanager
def paused(pid: int, within: float = 10.0) -> Iterator[None]:
    """SIGSTOP `pid` and return only once every one of its threads has stopped, SIGCONT on
    the way out. kill() returns before a busy thread takes the stop: on a loaded machine a
    JVM's network thread can still answer a request sent right after it."""
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + within
        while not all_threads_stopped(pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"process {pid} did not stop within {within} s")
            time.sleep(0.01)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
