"""Supervised background loops (consumers, clocks, outboxes, refreshers).

A loop that raises is logged with its traceback (`background_task_failed`), counted
(`tiendo_background_restarts_total{task}`) and started again after an exponential backoff;
it never ends silently. Each loop calls its `beat` on every iteration; one that has not
beaten within its `stale_after` is `stale` — stuck, or failing on every start, since a
restart is not a beat — and the service's /readyz answers 503 with the loop named. So does
one `failing`: FAILING_AFTER failures in a row, which a loop that beats between them (a
consumer polls, then its batch fails) shows in no other way.

A run that stays silent for its whole `stale_after` is stuck (an await that will never
end: a lost wake-up in a client library, a deadlock): it is logged with where every task
of the service was waiting (`background_task_stuck`), cancelled and restarted like a
failed one. A process manager restarting the whole service on a 503 is not assumed.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.responses import JSONResponse

from tiendo.logs import get_logger

log = get_logger(__name__)

Beat = Callable[[], None]


class LoopState(StrEnum):
    RUNNING = "running"
    RESTARTING = "restarting"  # failed, waiting for its backoff
    FAILING = "failing"  # failed FAILING_AFTER times in a row: restarting will not help
    STALE = "stale"
    DEAD = "dead"  # ended, or its task is gone


# One or two failures are what a transient costs (a deadlock's loser, a broker's leader
# moving, a database failing over): the next run goes on. A third in a row, after the
# backoff's 1 s and 2 s, is a cause that stays: a batch PostgreSQL refuses, restarted on
# forever while the loop beat between failures and /readyz said 200. A run that lasts
# longer than the backoff's cap ran well (the backoff starts afresh after it), and ends it.
FAILING_AFTER = 3


def backoff_delay(failures: int, initial: float, cap: float) -> float:
    """Seconds to wait after the `failures`-th failure in a row: doubling, capped."""
    return min(cap, initial * 2.0 ** max(0, failures - 1))


def loop_state(
    *,
    ended: bool,
    backing_off: bool,
    since_beat: float,
    stale_after: float | None,
    failures_in_a_row: int = 0,
) -> LoopState:
    """A loop's state from what its supervisor knows (pure, for /readyz)."""
    if ended:
        return LoopState.DEAD
    if stale_after is not None and since_beat > stale_after:
        return LoopState.STALE
    if failures_in_a_row >= FAILING_AFTER:
        return LoopState.FAILING
    return LoopState.RESTARTING if backing_off else LoopState.RUNNING


@dataclass
class LoopMetrics:
    restarts: Counter
    heartbeat: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry) -> "LoopMetrics":
        return cls(
            Counter(
                "tiendo_background_restarts_total",
                "Background loops restarted after a failure or a stuck run",
                ["task"],
                registry=registry,
            ),
            Gauge(
                "tiendo_background_heartbeat_timestamp_seconds",
                "When each background loop last completed an iteration",
                ["task"],
                registry=registry,
                # With several workers (tiendo.serve.serve_workers) the oldest beat among
                # the live ones: a loop stuck in any worker must show as stale.
                multiprocess_mode="livemin",
            ),
        )


class Loop:
    """One named background loop, run by `Supervisor`.

    `body(beat)` runs until cancelled; `stale_after`: seconds without a beat after which
    the loop counts as stuck (None: a loop that may rightly stay idle, judged alive while
    its task runs).
    """

    def __init__(
        self,
        name: str,
        body: Callable[[Beat], Awaitable[None]],
        *,
        stale_after: float | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 10.0,
    ) -> None:
        self.name = name
        self._body = body
        self.stale_after = stale_after
        self._backoff = (backoff_initial, backoff_max)
        self._metrics: LoopMetrics | None = None
        self._task: asyncio.Task[None] | None = None
        self._beat_monotonic = time.monotonic()
        self.last_heartbeat: datetime | None = None
        self.restarts = 0
        self.last_error: str | None = None
        self._backing_off = False
        self._failures = 0  # in a row, as of the last failure
        self._run_started = time.monotonic()

    def beat(self) -> None:
        """The loop completed an iteration."""
        self._beat_monotonic = time.monotonic()
        self.last_heartbeat = datetime.now(UTC)
        if self._metrics is not None:
            self._metrics.heartbeat.labels(self.name).set(self.last_heartbeat.timestamp())

    def start(self, metrics: LoopMetrics | None = None) -> None:
        self._metrics = metrics
        if metrics is not None:
            metrics.restarts.labels(self.name)
        self._beat_monotonic = time.monotonic()  # a first period of grace
        self._task = asyncio.create_task(self._supervise(), name=f"loop:{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def failures_in_a_row(self) -> int:
        """Failures since a run last went well: one running for longer than the backoff's
        cap (a beat is no proof: a consumer beats after each poll, whatever its batch)."""
        ran_well = not self._backing_off and time.monotonic() - self._run_started > self._backoff[1]
        return 0 if ran_well else self._failures

    @property
    def state(self) -> LoopState:
        return loop_state(
            ended=self._task is None or self._task.done(),
            backing_off=self._backing_off,
            since_beat=time.monotonic() - self._beat_monotonic,
            stale_after=self.stale_after,
            failures_in_a_row=self.failures_in_a_row,
        )

    def report(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "last_heartbeat": self.last_heartbeat.isoformat() if self.last_heartbeat else None,
            "stale_after_seconds": self.stale_after,
            "restarts": self.restarts,
            "failures_in_a_row": self.failures_in_a_row,
            "last_error": self.last_error,
        }

    async def _supervise(self) -> None:
        while True:
            started = self._run_started = time.monotonic()
            try:
                await self._run_watched()
                error = "returned"  # a loop is meant to run until cancelled
                log.error("background_task_failed", task=self.name, error=error)
            except LoopStuck as exc:
                error = str(exc)  # logged with the tasks' stacks where it was found
            except Exception as exc:
                # Any exception: a bug must not end the loop silently. It is logged with its
                # traceback, counted, visible in /readyz, and retried after a backoff.
                error = repr(exc)
                log.exception("background_task_failed", task=self.name, error=error)
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise  # the loop is being stopped
                # Not ours: aiokafka's consumer.stop() raises its fetch task's CancelledError
                # when stopped while backing off from an unreachable broker (as a loop's
                # `finally` does after a database error). Taken for a stop, it ended the
                # loop without a word and the service stopped consuming.
                error = repr(exc)
                log.error("background_task_failed", task=self.name, error=error, stray=True)
            self.restarts += 1
            self.last_error = error
            if self._metrics is not None:
                self._metrics.restarts.labels(self.name).inc()
            initial, cap = self._backoff
            # a loop that ran well for a while starts its backoff afresh
            self._failures = 1 if time.monotonic() - started > cap else self._failures + 1
            self._backing_off = True
            try:
                await asyncio.sleep(backoff_delay(self._failures, initial, cap))
            finally:
                self._backing_off = False

    async def _run_watched(self) -> None:
        """One run of the body; cancelled (raising `LoopStuck`) when it goes `stale_after`
        without a beat since it started or last beat."""
        started = time.monotonic()

        async def body() -> None:
            await self._body(self.beat)

        task = asyncio.create_task(body(), name=f"loop-body:{self.name}")
        try:
            while not task.done():
                silent = time.monotonic() - max(self._beat_monotonic, started)
                if self.stale_after is None:
                    await asyncio.wait({task})
                elif silent < self.stale_after:
                    await asyncio.wait({task}, timeout=self.stale_after - silent)
                else:
                    log.error(
                        "background_task_stuck",
                        task=self.name,
                        silent_seconds=round(silent, 1),
                        tasks=waiting_tasks(),
                    )
                    raise LoopStuck(f"stuck: no beat for {silent:.2g} s")
            task.result()
        finally:
            await _cancelled(task, self.name, patience=self.stale_after or 60.0)


class LoopStuck(Exception):
    """A run of a loop that did not beat within its `stale_after`."""


async def _cancelled(task: asyncio.Task[None], name: str, patience: float) -> None:
    """Cancel `task` and wait for it to end. One that does not end within `patience` (it
    swallows cancellation) is waited for still, with an error logged once: a second run
    beside it could double a consumer."""
    if task.done():
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=patience)
    if not done:
        log.error("background_task_not_ending", task=name, tasks=waiting_tasks())
        await asyncio.wait({task})
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


def waiting_tasks(frames: int = 8) -> dict[str, list[str]]:
    """Where each task of the running event loop is waiting: the chain of awaits from its
    coroutine down (innermost `frames` of them), as `function (file:line)`, for the log of
    a stuck loop. (`Task.get_stack` stops at the outermost frame of a suspended task.)"""
    return {task.get_name(): awaiting(task.get_coro())[-frames:] for task in asyncio.all_tasks()}


def awaiting(coro: object) -> list[str]:
    """The chain of awaits of a suspended coroutine, outermost first."""
    chain: list[str] = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            # a future (awaited through its C iterator), or another awaitable without frames
            name = type(coro).__name__
            chain.append("future" if name.startswith(("Future", "_asyncio.Future")) else name)
            break
        chain.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return chain


class Supervisor:
    """A service's background loops: started together, stopped together, reported."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._metrics = LoopMetrics.register(registry) if registry is not None else None
        self.loops: list[Loop] = []

    def start(self, loops: Sequence[Loop]) -> None:
        for loop in loops:
            loop.start(self._metrics)
            self.loops.append(loop)

    async def stop(self) -> None:
        for loop in self.loops:
            await loop.stop()

    @property
    def healthy(self) -> bool:
        return all(loop.state in (LoopState.RUNNING, LoopState.RESTARTING) for loop in self.loops)

    def report(self) -> dict[str, dict[str, Any]]:
        return {loop.name: loop.report() for loop in self.loops}

    def readiness(self, **details: Any) -> JSONResponse:
        """The /readyz answer: 200 while every loop runs (or waits to restart), 503 when one
        is dead, stale or failing; each loop's state and heartbeat, plus `details`."""
        ok = self.healthy
        body = {"status": "ready" if ok else "not ready", "loops": self.report(), **details}
        return JSONResponse(body, status_code=200 if ok else 503)


def every(seconds: float, grace: float = 3.0) -> float:
    """A loop's `stale_after` for a loop that beats every `seconds`: a few periods, and
    never less than `grace` times a minute-long hiccup of the database."""
    return max(seconds * grace, timedelta(minutes=1).total_seconds())
