"""Supervised loops: a failing loop is logged, restarted and shown; a stuck one makes the
service unready; none ends silently."""

import asyncio
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from starlette.responses import JSONResponse
from structlog.testing import capture_logs

from tiendo.background import (
    FAILING_AFTER,
    Beat,
    Loop,
    LoopState,
    Supervisor,
    backoff_delay,
    loop_state,
)


@given(st.integers(min_value=1, max_value=60), st.floats(0.01, 5), st.floats(5, 120))
def test_backoff_doubles_up_to_its_cap(failures: int, initial: float, cap: float) -> None:
    delay = backoff_delay(failures, initial, cap)
    assert initial <= delay <= cap
    assert backoff_delay(failures + 1, initial, cap) in (min(cap, 2 * delay), cap)


@given(
    st.booleans(),
    st.booleans(),
    st.floats(0, 1000),
    st.none() | st.floats(0, 1000),
    st.integers(0, 2 * FAILING_AFTER),
)
def test_an_ended_loop_is_dead_a_silent_one_stale_and_one_failing_again_and_again_failing(
    ended: bool, backing_off: bool, since: float, stale_after: float | None, failures: int
) -> None:
    state = loop_state(
        ended=ended,
        backing_off=backing_off,
        since_beat=since,
        stale_after=stale_after,
        failures_in_a_row=failures,
    )
    if ended:
        assert state is LoopState.DEAD
    elif stale_after is not None and since > stale_after:
        assert state is LoopState.STALE
    elif failures >= FAILING_AFTER:
        assert state is LoopState.FAILING
    else:
        assert state in (LoopState.RUNNING, LoopState.RESTARTING)


def _body(response: JSONResponse) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(bytes(response.body))
    return body


async def test_a_loop_raising_an_unexpected_error_is_logged_restarted_and_shown() -> None:
    calls = 0

    async def flaky(beat: Beat) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ValueError(f"bug number {calls}")
        while True:
            beat()
            await asyncio.sleep(0.01)

    registry = CollectorRegistry()
    supervisor = Supervisor(registry)
    with capture_logs() as logs:
        supervisor.start([Loop("flaky", flaky, stale_after=5, backoff_initial=0.01)])
        for _ in range(200):
            await asyncio.sleep(0.01)
            if calls > 2 and supervisor.loops[0].last_heartbeat is not None:
                break
        response = supervisor.readiness()
        await supervisor.stop()
    failures = [e for e in logs if e["event"] == "background_task_failed"]
    assert [f["error"] for f in failures] == [
        "ValueError('bug number 1')",
        "ValueError('bug number 2')",
    ]
    assert all(f["exc_info"] for f in failures)  # with the traceback
    assert response.status_code == 200
    loop = _body(response)["loops"]["flaky"]
    assert loop["state"] == "running"
    assert loop["restarts"] == 2
    assert loop["last_error"] == "ValueError('bug number 2')"
    assert loop["last_heartbeat"] is not None
    assert registry.get_sample_value("tiendo_background_restarts_total", {"task": "flaky"}) == 2


async def test_a_loop_that_never_beats_goes_stale_and_the_service_unready() -> None:
    async def stuck(beat: Beat) -> None:
        await asyncio.Event().wait()  # a deadlock, a hung connection

    async def healthy(beat: Beat) -> None:
        while True:
            beat()
            await asyncio.sleep(0.01)

    supervisor = Supervisor(CollectorRegistry())
    supervisor.start(
        [Loop("stuck", stuck, stale_after=0.2), Loop("healthy", healthy, stale_after=30)]
    )
    try:
        assert supervisor.readiness().status_code == 200  # within its first period
        await asyncio.sleep(0.3)
        response = supervisor.readiness()
        assert response.status_code == 503
        loops = _body(response)["loops"]
        assert (loops["stuck"]["state"], loops["healthy"]["state"]) == ("stale", "running")
        assert loops["stuck"]["last_heartbeat"] is None
    finally:
        await supervisor.stop()


async def test_a_loop_failing_at_every_start_goes_stale_too() -> None:
    async def broken(beat: Beat) -> None:
        raise ValueError("config")

    supervisor = Supervisor()
    with capture_logs():
        supervisor.start([Loop("broken", broken, stale_after=0.2, backoff_initial=0.01)])
        await asyncio.sleep(0.3)
        try:
            assert supervisor.readiness().status_code == 503
            assert supervisor.loops[0].restarts >= 3
        finally:
            await supervisor.stop()


async def test_a_loop_that_returns_is_restarted_not_lost() -> None:
    runs = 0

    async def returns(beat: Beat) -> None:
        nonlocal runs
        runs += 1

    supervisor = Supervisor()
    with capture_logs() as logs:
        supervisor.start([Loop("returns", returns, backoff_initial=0.01)])
        await asyncio.sleep(0.1)
        await supervisor.stop()
    assert runs >= 2
    assert logs[0]["event"] == "background_task_failed"
    assert logs[0]["error"] == "returned"


async def test_a_stray_cancelled_error_restarts_the_loop_instead_of_ending_it() -> None:
    """A library's inner task cancelled (aiokafka's consumer.stop() while backing off)
    raises CancelledError in the loop though nobody stopped it: restart, never end."""
    runs = 0
    second_run = asyncio.Event()

    async def body(beat: Beat) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            inner = asyncio.ensure_future(asyncio.sleep(10))
            inner.cancel()
            await inner
        second_run.set()
        await asyncio.sleep(10)

    supervisor = Supervisor()
    supervisor.start([Loop("stray", body, backoff_initial=0.01)])
    try:
        await asyncio.wait_for(second_run.wait(), timeout=5)
        assert runs == 2
        assert supervisor.loops[0].restarts == 1
    finally:
        await supervisor.stop()
    # cancelling the loop itself still stops it
    assert supervisor.loops[0].state is LoopState.DEAD


async def test_a_run_silent_for_its_stale_after_is_logged_where_it_waits_and_restarted() -> None:
    """A lost wake-up (an await that never ends) inside a loop that was beating: the run is
    cancelled, its cleanup runs, the log says which await held it, and a new run beats."""
    runs = 0
    cleaned_up = 0

    async def never_woken() -> None:
        await asyncio.Event().wait()

    async def loses_a_wake_up(beat: Beat) -> None:
        nonlocal runs, cleaned_up
        runs += 1
        try:
            for _ in range(3):
                beat()
                await asyncio.sleep(0.01)
            if runs == 1:
                await never_woken()
            while True:
                beat()
                await asyncio.sleep(0.01)
        finally:
            cleaned_up += 1

    registry = CollectorRegistry()
    supervisor = Supervisor(registry)
    with capture_logs() as logs:
        supervisor.start([Loop("lossy", loses_a_wake_up, stale_after=0.3, backoff_initial=0.01)])
        try:
            for _ in range(300):
                await asyncio.sleep(0.01)
                if runs == 2 and supervisor.loops[0].state is LoopState.RUNNING:
                    break
            response = supervisor.readiness()
        finally:
            await supervisor.stop()
    [stuck] = [e for e in logs if e["event"] == "background_task_stuck"]
    assert stuck["task"] == "lossy"
    assert stuck["silent_seconds"] >= 0.3
    [chain] = [c for name, c in stuck["tasks"].items() if name == "loop-body:lossy"]
    # the await that held it, down to the future nobody will complete
    assert [link.split(" ")[0] for link in chain[-4:]] == [
        "loses_a_wake_up",
        "never_woken",
        "wait",
        "future",
    ]
    assert (runs, cleaned_up) == (2, 2)  # the stuck run's `finally` ran, then the stop's
    assert response.status_code == 200
    loop = _body(response)["loops"]["lossy"]
    assert (loop["restarts"], loop["last_error"]) == (1, "stuck: no beat for 0.3 s")
    assert registry.get_sample_value("tiendo_background_restarts_total", {"task": "lossy"}) == 1


async def test_a_run_failing_at_once_each_time_is_never_taken_for_stuck() -> None:
    """Silence is counted from the last beat or the run's start, whichever is later: a loop
    restarted after a failure gets its whole `stale_after` again (and stays `stale` in
    /readyz until it beats)."""
    starts: list[float] = []

    async def slow_to_start(beat: Beat) -> None:
        starts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.15)  # less than stale_after, so never stuck
        raise ValueError("not yet")

    supervisor = Supervisor()
    with capture_logs() as logs:
        supervisor.start([Loop("slow", slow_to_start, stale_after=0.2, backoff_initial=0.01)])
        await asyncio.sleep(0.8)
        state = supervisor.loops[0].state
        await supervisor.stop()
    assert not [e for e in logs if e["event"] == "background_task_stuck"]
    assert len(starts) >= 3
    assert state is LoopState.STALE


async def test_a_stuck_run_that_will_not_end_is_waited_for_before_another_starts() -> None:
    """Two runs of a consumer side by side would be two members of its group: a stuck run
    that takes its time to end on cancellation is waited for, and said so."""
    running = 0
    most = 0
    runs = 0

    async def stubborn(beat: Beat) -> None:
        nonlocal running, most, runs
        runs += 1
        running += 1
        most = max(most, running)
        try:
            if runs == 1:
                beat()
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    await asyncio.sleep(0.4)  # cleanup longer than its patience
                    raise
            while True:
                beat()
                await asyncio.sleep(0.01)
        finally:
            running -= 1

    supervisor = Supervisor()
    with capture_logs() as logs:
        supervisor.start([Loop("stubborn", stubborn, stale_after=0.1, backoff_initial=0.01)])
        for _ in range(200):
            await asyncio.sleep(0.01)
            if runs == 2:
                break
        await supervisor.stop()
    events = [e["event"] for e in logs]
    assert events.index("background_task_stuck") < events.index("background_task_not_ending")
    assert (runs, most) == (2, 1)


async def test_a_loop_that_beats_but_fails_again_and_again_is_unready_until_a_run_goes_well() -> (
    None
):
    """A consumer beats after each poll and then fails on the batch it polled (one
    PostgreSQL refuses): never stale, restarting forever, and /readyz said 200. After
    FAILING_AFTER failures in a row it is `failing` (503), between runs and during them,
    until a run outlasts the backoff's cap: then it is ready again."""
    runs = 0
    cured = asyncio.Event()

    async def poisoned(beat: Beat) -> None:
        nonlocal runs
        runs += 1
        beat()  # polled
        await asyncio.sleep(0.01)
        if not cured.is_set():
            raise ValueError("invalid byte sequence for encoding UTF8: 0x00")
        while True:
            beat()
            await asyncio.sleep(0.01)

    supervisor = Supervisor()
    loop = Loop("consumer", poisoned, stale_after=5, backoff_initial=0.01, backoff_max=0.3)
    answers: list[tuple[int, str]] = []
    with capture_logs():
        supervisor.start([loop])
        try:
            for _ in range(300):
                await asyncio.sleep(0.01)
                body = _body(response := supervisor.readiness())
                answers.append((response.status_code, body["loops"]["consumer"]["state"]))
                if runs > FAILING_AFTER + 3:
                    break
            # ready through the first failures (a transient's), then never again
            first = answers.index((503, "failing"))
            assert all(code == 200 for code, _ in answers[:first])
            assert all(code == 503 for code, _ in answers[first:]), answers[first:]
            assert {state for _, state in answers[first:]} == {"failing"}
            assert body["loops"]["consumer"]["failures_in_a_row"] >= FAILING_AFTER
            assert loop.state is LoopState.FAILING

            cured.set()
            for _ in range(300):
                await asyncio.sleep(0.01)
                if supervisor.readiness().status_code == 200:
                    break
            response = supervisor.readiness()
            assert response.status_code == 200
            consumer = _body(response)["loops"]["consumer"]
            assert (consumer["state"], consumer["failures_in_a_row"]) == ("running", 0)
        finally:
            await supervisor.stop()
