"""The consumer's batch in flight (services.aggregator.inflight.InFlight): a rebalance waits
for the transaction and its feed, never for the report to the broker, which may itself be
waiting on that rebalance."""

import asyncio

import pytest

from services.aggregator.inflight import InFlight


async def test_a_rebalance_waits_for_the_transaction_not_for_the_report_after_it() -> None:
    transaction_done = asyncio.Event()
    report_may_end = asyncio.Event()
    steps: list[str] = []

    async def transaction() -> None:
        await asyncio.sleep(0.05)
        steps.append("committed")
        transaction_done.set()

    async def report() -> None:
        steps.append("reporting")
        await report_may_end.wait()  # a broker commit waiting for the group to settle
        steps.append("reported")

    inflight = InFlight()
    await inflight.submit(transaction(), report)
    await asyncio.wait_for(inflight.settle(), timeout=5)  # the rebalance callback
    assert transaction_done.is_set()
    await asyncio.sleep(0.01)
    assert steps == ["committed", "reporting"]
    # the next batch waits for both parts of this one
    nxt = asyncio.create_task(inflight.submit(transaction(), None))
    await asyncio.sleep(0.05)
    assert not nxt.done()
    report_may_end.set()
    await asyncio.wait_for(nxt, timeout=5)
    await inflight.wait()
    assert steps == ["committed", "reporting", "reported", "committed"]


async def test_a_failed_transaction_skips_its_report_and_reaches_the_loop() -> None:
    reported = False

    async def transaction() -> None:
        raise RuntimeError("database gone")

    async def report() -> None:
        nonlocal reported
        reported = True

    inflight = InFlight()
    await inflight.submit(transaction(), report)
    await inflight.settle()  # takes no outcome
    with pytest.raises(RuntimeError, match="database gone"):
        await inflight.wait()
    assert not reported


async def test_cancel_stops_the_transaction_it_is_waiting_on() -> None:
    started = asyncio.Event()
    cancelled = False

    async def transaction() -> None:
        nonlocal cancelled
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled = True
            raise

    inflight = InFlight()
    await inflight.submit(transaction(), None)
    await started.wait()
    await asyncio.wait_for(inflight.cancel(), timeout=5)
    assert cancelled
    await inflight.settle()  # nothing left in flight
