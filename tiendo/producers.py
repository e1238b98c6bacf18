"""Idempotent producers that outlive a broker's crash: stopped without hanging, and
replaced after a failure.

An idempotent producer that lost contact with the broker for a while can be left refusing
everything (OutOfOrderSequenceNumber on every later batch: seen after the broker was
killed and came back), and aiokafka never expires an idempotent batch, so its `stop()`
can wait for good. Ingest retires its producer after any failed publish
(services/ingest/publisher.py); the aggregator's feed and dead letters use
`ReplacedProducer`.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from tiendo.kafka import start_whole
from tiendo.logs import get_logger

log = get_logger(__name__)


async def stop_producer(producer: AIOKafkaProducer, grace: float) -> None:
    """Stop, flushing for at most `grace` seconds, and never wait much longer than that.

    aiokafka retries a batch whose partition leader is known but unreachable forever, so
    the flush of `stop()` never ends while the broker is down: what is still pending after
    the grace period is failed (none of it was acknowledged to a client). Even then a
    produce request aiokafka is still retrying can hold `stop()` for good (seen after a
    broker was killed and came back): after a second grace period the producer is
    abandoned, since the supervisor connects a fresh one only once this returns.
    """
    stopping = asyncio.ensure_future(producer.stop())
    try:
        done, _ = await asyncio.wait({stopping}, timeout=grace)
        if not done:
            _fail_pending(producer)
            done, _ = await asyncio.wait({stopping}, timeout=grace)
    except asyncio.CancelledError:
        # shutting down while a retired producer still flushes: abandon it, but close it
        _fail_pending(producer)
        await _abandon_stop(producer, stopping, grace)
        raise
    if done:
        with contextlib.suppress(*_STOP_ERRORS):
            await stopping
        return
    log.warning("kafka_producer_abandoned", grace_seconds=grace)
    await _abandon_stop(producer, stopping, grace)


# What `stop()` of a producer whose batches `_fail_pending` took away may raise: its own
# errors, and aiokafka's retry path finding the batch gone (KeyError in `reenqueue`).
_STOP_ERRORS = (KafkaError, KeyError)


async def _abandon_stop(
    producer: AIOKafkaProducer, stopping: "asyncio.Future[None]", grace: float
) -> None:
    """Cancel a `stop()` that does not end, then close the producer's connections."""
    stopping.cancel()
    await asyncio.wait({stopping}, timeout=grace)
    if stopping.done() and not stopping.cancelled():
        with contextlib.suppress(*_STOP_ERRORS):
            stopping.result()
    with contextlib.suppress(KafkaError, OSError, TimeoutError):
        async with asyncio.timeout(grace):
            await producer.client.close()


def _fail_pending(producer: AIOKafkaProducer) -> None:
    # aiokafka (pinned) has no public way to abandon a flush; these are its accumulator's
    # internals. Every future it fails is marked retrieved: asyncio would log each one.
    accumulator = producer._message_accumulator
    batches = [b for queue in accumulator._batches.values() for b in queue]
    batches += list(accumulator._pending_batches)
    accumulator.fail_all(KafkaConnectionError("gave up on Kafka"))
    for batch in batches:
        for future in (batch.future, batch._drain_waiter, *(f for f, _ in batch._msg_futures)):
            if future.done() and not future.cancelled():
                future.exception()


class ReplacedProducer:
    """The producer to send with now: started on first use, and after a failure
    (`retire`) a fresh one on the next use, the failed one stopped in the background."""

    def __init__(self, make: Callable[[], AIOKafkaProducer], grace: float = 5.0) -> None:
        self._make = make
        self._grace = grace
        self._producer: AIOKafkaProducer | None = None
        self._starting: asyncio.Lock = asyncio.Lock()
        self._stopping: set[asyncio.Task[None]] = set()
        self.replaced = 0

    async def get(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = self._make()
                try:
                    await start_whole(producer)
                except BaseException:
                    await stop_producer(producer, self._grace)
                    raise
                self._producer = producer
            return self._producer

    @contextlib.asynccontextmanager
    async def sending(self) -> AsyncIterator[AIOKafkaProducer]:
        """The producer to send with; retired if the block raises a KafkaError (raised on)."""
        producer = await self.get()
        try:
            yield producer
        except KafkaError as exc:
            self.retire(producer, exc)
            raise

    def retire(self, producer: AIOKafkaProducer, error: BaseException) -> None:
        """`producer` failed a send: the next `get` starts another (once per producer)."""
        if self._producer is not producer:
            return
        self._producer = None
        self.replaced += 1
        log.warning("kafka_producer_retired", error=repr(error))
        task = asyncio.create_task(stop_producer(producer, self._grace))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def stop(self) -> None:
        """Stop the current producer (flushed within the grace) and wait for retired ones."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_producer(producer, self._grace)
        if self._stopping:
            await asyncio.wait(set(self._stopping))


async def acknowledged(futures: Sequence["asyncio.Future[object]"], within: float | None) -> None:
    """Wait for the sends' acknowledgements, at most `within` seconds (then
    `KafkaTimeoutError`, the sends going on); the first failure is raised."""
    if not futures:
        return
    # (not asyncio.timeout around a gather: it would cancel the producer's own futures)
    done, pending = await asyncio.wait(futures, timeout=within)
    # every failure retrieved (asyncio logs each one left unread), the first raised
    errors = [e for e in (f.exception() for f in done) if e is not None]
    if errors:
        raise errors[0]
    if pending:
        raise KafkaTimeoutError(f"{len(pending)} of {len(futures)} not acknowledged in {within} s")
