"""Kafka plumbing: topic creation and producers/consumers with tiendo's guarantees."""

import contextlib
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
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
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                missing = [t for t in topics if t.name not in existing]
                if not missing:
                    return
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
            finally:
                await admin.close()


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
