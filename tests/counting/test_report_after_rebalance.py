"""The report to the broker after a batch's transaction (services.aggregator.consumer
.report_offsets) runs outside a rebalance's wait, so a partition of its batch may have
moved to another replica by then. It reports what the replica still holds and nothing
else: before, aiokafka's assertion on the moved partition failed the consumer task, which
restarted it and so rebalanced the group again, at every rebalance (the benchmark's two
replicas lost half their throughput to it)."""

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry, Gauge

from devtools.localstack import KafkaBroker
from services.aggregator.broker_offsets import report_offsets


async def _held(consumers: list[AIOKafkaConsumer], want: list[int], timeout: float) -> None:
    """Poll every consumer (a group settles only while its members poll) until each holds
    `want[i]` partitions."""
    deadline = asyncio.get_running_loop().time() + timeout
    while [len(c.assignment()) for c in consumers] != want:
        assert asyncio.get_running_loop().time() < deadline, [c.assignment() for c in consumers]
        await asyncio.gather(*(c.getmany(timeout_ms=100) for c in consumers))


async def test_a_batch_reported_after_its_partition_moved_reports_only_what_is_still_held(
    kafka: KafkaBroker,
) -> None:
    topic, group = f"events-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        for partition in (0, 1):
            for _ in range(5):
                await producer.send_and_wait(topic, b"x", partition=partition)
    finally:
        await producer.stop()

    def member() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    first, second = member(), member()
    await first.start()
    try:
        await _held([first], [2], timeout=30)
        # a batch of both partitions is fetched and applied; then a replica joins
        await second.start()
        try:
            await _held([first, second], [1, 1], timeout=60)
            (kept,) = first.assignment()
            while first.highwater(kept) is None:  # known from a fetch of it
                await asyncio.gather(first.getmany(timeout_ms=100), second.getmany(timeout_ms=100))
            lag = Gauge("lag", "", ["partition"], registry=CollectorRegistry())

            await report_offsets(first, topic, {0: 3, 1: 4}, lag)

            # the partition still held: committed to the broker, its lag reported
            assert await first.committed(kept) == {0: 3, 1: 4}[kept.partition]
            moved = TopicPartition(topic, 1 - kept.partition)
            reported = {s.labels["partition"]: s.value for m in lag.collect() for s in m.samples}
            assert reported == {str(kept.partition): 5 - {0: 3, 1: 4}[kept.partition]}
            # the moved one: nothing committed for it by the replica that lost it
            assert await second.committed(moved) is None
        finally:
            await second.stop()
    finally:
        await first.stop()
