"""Publishing accepted events to Kafka: 202 only after every event is acknowledged."""

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tiendo.event import Event, encode
from tiendo.kafka import reliable_producer
from tiendo.logs import get_logger

log = get_logger(__name__)


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge in time; the client should retry with the same event_ids."""


class Publisher:
    def __init__(self, bootstrap: str, topic: str, timeout: float) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._timeout = timeout
        self._producer: AIOKafkaProducer | None = None

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def connect_forever(self, retry_every: float = 2.0) -> None:
        """Start the producer, retrying until the broker answers (ingest starts without it)."""
        while self._producer is None:
            producer = reliable_producer(self._bootstrap, client_id="tiendo-ingest")
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                log.warning("kafka_connect_failed", error=str(exc))
                await producer.stop()
                await asyncio.sleep(retry_every)
                continue
            self._producer = producer
            log.info("kafka_connected", bootstrap=self._bootstrap)

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

    async def publish(self, events: Sequence[Event]) -> None:
        """Send every event and wait for all acknowledgements, or raise KafkaUnavailable."""
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("producer not connected")
        try:
            async with asyncio.timeout(self._timeout):
                futures = [
                    await producer.send(self._topic, encode(e), key=e.unit.encode()) for e in events
                ]
                await asyncio.gather(*futures)
        except (TimeoutError, KafkaError) as exc:
            # Some events may have been stored: harmless, a retry with the same ids is
            # deduplicated by the aggregator.
            raise KafkaUnavailable(str(exc) or type(exc).__name__) from exc

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()  # flushes what is in flight
            self._producer = None
