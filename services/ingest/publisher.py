"""Publishing accepted events to Kafka: 202 only after every event is acknowledged.

The producer is idempotent (acks=all), and an idempotent producer that lost contact with
the broker for a while can be left refusing everything (OutOfOrderSequenceNumber on
batches it gave up on). So any failed publish retires the producer and a supervisor
connects a fresh one; until it is connected, publishes fail at once (503) instead of
each waiting out the timeout. Nothing a retired producer still holds was answered 202,
so giving up on it loses nothing a client was told is stored.
"""

import asyncio
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tiendo.events.progress_event import Event, encode_all
from tiendo.kafka import RecordBatches, reliable_producer, start_whole
from tiendo.logs import get_logger
from tiendo.producers import stop_producer

log = get_logger(__name__)
_LOG_EVERY_ATTEMPTS = 60


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge in time; the client should retry with the same event_ids."""


def _abandon(futures: Sequence["asyncio.Future[object]"]) -> None:
    for future in futures:
        if future.done() and not future.cancelled():
            future.exception()  # retrieved, so asyncio does not log it as lost
        else:
            future.cancel()


def records_of(events: Sequence[Event], source: str) -> list[tuple[bytes, bytes]]:
    """The Kafka records of a request's events: keyed by unit, so a unit's events keep
    their order in one partition."""
    return list(
        zip([e.unit.encode() for e in events], encode_all(events, source=source), strict=True)
    )


class Publisher:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        timeout: float,
        on_retire: Callable[[], None] = lambda: None,
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._timeout = timeout
        self._on_retire = on_retire
        self._producer: AIOKafkaProducer | None = None
        self._batches: RecordBatches | None = None
        self._failed = asyncio.Event()
        self.has_connected = False  # since start: a refusal before it is the start, not an outage

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def _connect(self, retry_every: float) -> AIOKafkaProducer:
        attempt = 0
        while True:
            producer = reliable_producer(self._bootstrap, client_id="tiendo-ingest")
            attempt += 1
            try:
                await start_whole(producer)
            except (KafkaError, OSError) as exc:
                if attempt % _LOG_EVERY_ATTEMPTS == 1:  # an outage is one line a minute
                    log.warning(
                        "kafka_connect_failed",
                        error=str(exc) or type(exc).__name__,
                        attempt=attempt,
                    )
                await stop_producer(producer, grace=1.0)
                await asyncio.sleep(retry_every)
                continue
            except asyncio.CancelledError:
                await stop_producer(producer, grace=1.0)
                raise
            return producer

    async def run(self, retry_every: float = 1.0) -> None:
        """Keep a working producer until cancelled: connect (retrying until the broker
        answers), and replace the producer after each failed publish."""
        while True:
            producer = await self._connect(retry_every)
            self._failed.clear()
            self._batches = RecordBatches(producer)
            self._producer = producer
            self.has_connected = True
            log.info("kafka_connected", bootstrap=self._bootstrap)
            await self._failed.wait()
            # Publishes still waiting on it time out within `timeout`; then it goes.
            await stop_producer(producer, grace=self._timeout)

    def _fail(self, producer: AIOKafkaProducer, error: str) -> None:
        if self._producer is producer:
            self._producer = None
            self._failed.set()
            self._on_retire()
            log.warning("kafka_producer_retired", error=error)

    async def reachable(self, wait: float = 2.0) -> bool:
        """Whether the broker answers a metadata request now."""
        producer = self._producer
        if producer is None:
            return False
        try:
            async with asyncio.timeout(wait):
                await producer.client.fetch_all_metadata()
        except (TimeoutError, KafkaError, OSError):
            return False
        return True

    async def publish(self, events: Sequence[Event], source: str = "") -> None:
        """Send every event (as from `source`) and wait for all acknowledgements, or raise
        KafkaUnavailable."""
        if not events:
            return  # every event of the request was a repeat: nothing to store
        producer, batches = self._producer, self._batches
        if producer is None or batches is None:
            raise KafkaUnavailable("not connected to Kafka")
        records = records_of(events, source)
        futures: list[asyncio.Future[object]] = []
        try:
            async with asyncio.timeout(self._timeout):
                futures = await batches.send(self._topic, records)
                await asyncio.gather(*futures)
        except (TimeoutError, KafkaError) as exc:
            # Some events may have been stored: harmless, a retry with the same ids is
            # deduplicated by the aggregator.
            _abandon(futures)
            error = str(exc) or type(exc).__name__
            self._fail(producer, error)
            raise KafkaUnavailable(error) from exc

    async def close(self) -> None:
        """Flush what is in flight (bounded by the publish timeout) and disconnect."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_producer(producer, grace=self._timeout)
