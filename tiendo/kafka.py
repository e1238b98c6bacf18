"""Kafka plumbing: topic creation and producers/consumers with tiendo's guarantees."""

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner
from tenacity import AsyncRetrying, stop_after_delay, wait_exponential

from tiendo.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False
    # The event topics are the system of record a rebuild replays: never expire them.
    keep_forever: bool = False

    def configs(self) -> dict[str, str]:
        configs: dict[str, str] = {}
        if self.compacted:
            configs |= {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
        if self.keep_forever:
            configs["retention.ms"] = "-1"
        return configs


def event_topics(events: str, dead_letters: str, partitions: int) -> list[TopicSpec]:
    """`progress-events` and its dead-letter topic, kept forever."""
    return [
        TopicSpec(events, partitions, keep_forever=True),
        TopicSpec(dead_letters, 1, keep_forever=True),
    ]


async def ensure_topics(
    bootstrap: str, topics: list[TopicSpec], *, wait_seconds: float = 60.0
) -> None:
    """Create missing topics (idempotent), waiting for a broker that is still starting."""
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(wait_seconds),
        wait=wait_exponential(multiplier=0.2, max=3),
        reraise=True,
    ):
        with attempt:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
            try:
                await start_whole(admin)
                existing = set(await admin.list_topics())
                missing = [t for t in topics if t.name not in existing]
                if missing:
                    # another service may create it between our list and create
                    with contextlib.suppress(TopicAlreadyExistsError):
                        await admin.create_topics(
                            [
                                NewTopic(
                                    name=t.name,
                                    num_partitions=t.partitions,
                                    replication_factor=1,
                                    topic_configs=t.configs(),
                                )
                                for t in missing
                            ]
                        )
                    log.info("topics_created", topics=[t.name for t in missing])
                async with asyncio.timeout(10.0):  # then the whole attempt again
                    await _until_led(admin, {t.name for t in topics})
            finally:
                await admin.close()


async def _until_led(admin: AIOKafkaAdminClient, names: set[str]) -> None:
    # A topic the controller has just created reaches the broker's metadata a moment later.
    # A client asking for it before then is told it does not exist (aiokafka logs that at
    # ERROR) and the broker, trying to auto-create it, logs a WARN: return once every
    # partition of every topic has a leader. All topics are described, as naming them
    # would ask the broker to create what it does not know yet.
    while True:
        described = {t["topic"]: t for t in await admin.describe_topics()}
        if all(
            name in described
            and described[name]["error_code"] == 0
            and described[name]["partitions"]
            and all(p["leader"] >= 0 for p in described[name]["partitions"])
            for name in names
        ):
            return
        await asyncio.sleep(0.1)


def reliable_producer(
    bootstrap: str, *, client_id: str, linger_ms: int = 2, request_timeout_ms: int = 10_000
) -> AIOKafkaProducer:
    """A producer whose acknowledgements mean durably stored: acks=all and idempotence."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        request_timeout_ms=request_timeout_ms,
        max_batch_size=1_048_576,
        compression_type=None,
    )


# More distinct keys than units in the country's tree: the cache starts again (a bounded size
# whatever the keys).
_KEYS_REMEMBERED = 100_000


class RecordBatches:
    """Sends a list of keyed records as whole record batches, one per partition.

    `producer.send` per record costs a future and an accumulator append each, which was a
    third of ingest's CPU (bench flame graph); a builder per partition costs neither. The
    partition of a key is the default partitioner's (murmur2, as Java clients), so a unit's
    events land where a plain `send` would put them. aiokafka's murmur2 is pure Python (a
    tenth of ingest's CPU): each key's partition is remembered while the topic's partitions
    stay the same, and keys (units) are few.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._partitioner = DefaultPartitioner()
        # aiokafka queues a batch only after the previous one of its partition is drained,
        # and concurrent callers waiting for that can time out in a pile-up (seen with 4):
        # one caller queues at a time; waiting for acknowledgements is concurrent.
        self._queueing = asyncio.Lock()
        # per topic: the partitions the keys were hashed over, and each key's partition
        self._partition_of: dict[str, tuple[list[int], dict[bytes, int]]] = {}

    def _partitions_of_keys(self, topic: str, partitions: list[int]) -> dict[bytes, int]:
        hashed_over, known = self._partition_of.get(topic, (None, None))
        if known is None or hashed_over != partitions or len(known) > _KEYS_REMEMBERED:
            known = {}
            self._partition_of[topic] = (partitions, known)
        return known

    async def send(
        self, topic: str, records: Sequence[tuple[bytes, bytes]]
    ) -> list["asyncio.Future[Any]"]:
        """Queue every (key, value); returns the batches' delivery futures."""
        producer = self._producer
        futures: list[asyncio.Future[Any]] = []
        async with self._queueing:
            partitions = sorted(await producer.partitions_for(topic))
            known = self._partitions_of_keys(topic, partitions)
            builders: dict[int, Any] = {}
            for key, value in records:
                partition = known.get(key)
                if partition is None:
                    partition = known[key] = self._partitioner(key, partitions, partitions)
                builder = builders.get(partition)
                if builder is None:
                    builder = builders[partition] = producer.create_batch()
                if builder.append(key=key, value=value, timestamp=None) is None:
                    # full (and closed by aiokafka): send it and start the next one
                    futures.append(await producer.send_batch(builder, topic, partition=partition))
                    builder = builders[partition] = producer.create_batch()
                    builder.append(key=key, value=value, timestamp=None)
            for partition, builder in builders.items():
                # Closed, a batch is sent at once: it is whole, and waiting `linger_ms` for
                # records that will never join it would only add to the request's time.
                builder.close()
                futures.append(await producer.send_batch(builder, topic, partition=partition))
        return futures


class Startable(Protocol):
    async def start(self) -> None: ...


async def start_whole(client: Startable) -> None:
    """`client.start()`, finished even when the caller is cancelled meanwhile: aiokafka's
    bootstrap holds its first connection in a local until it succeeds, so a cancel in the
    middle (a service stopped right after it started) leaks that connection, and the later
    `stop()` cannot close it. The cancel is raised once the start is done, and the caller
    stops the client as it would after any start (tests/house/test_kafka_clients.py)."""
    starting = asyncio.ensure_future(client.start())
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await starting
        raise
