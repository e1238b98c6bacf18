"""Ingest's batched sends (tiendo.kafka.RecordBatches) against the real broker: every
record arrives once, on the partition a plain `send` gives its key, in the order sent."""

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer

from devtools.localstack import KafkaBroker
from tiendo.kafka import RecordBatches, TopicSpec, ensure_topics, reliable_producer

PARTITIONS = 3


async def _read(bootstrap: str, topic: str, n: int) -> list[tuple[int, bytes, bytes]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[tuple[int, bytes, bytes]] = []
    try:
        async with asyncio.timeout(60):
            while len(got) < n:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    got += [(tp.partition, r.key, r.value) for r in records]
    finally:
        await consumer.stop()
    return got


async def test_batches_land_where_send_would_put_them_once_and_in_order(
    kafka: KafkaBroker,
) -> None:
    plain, batched = f"plain-{uuid.uuid4().hex[:8]}", f"batched-{uuid.uuid4().hex[:8]}"
    await ensure_topics(
        kafka.bootstrap, [TopicSpec(plain, PARTITIONS), TopicSpec(batched, PARTITIONS)]
    )
    # Enough records that some partitions need more than one record batch.
    records = [(f"unit-{i % 97}".encode(), f"{i:08d}".encode() * 200) for i in range(6000)]
    producer = reliable_producer(kafka.bootstrap, client_id="test-record-batches")
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(plain, v, key=k) for k, v in records])
        sender = RecordBatches(producer)
        # two callers at once, as concurrent requests would be
        halves = [records[:3000], records[3000:]]
        futures = await asyncio.gather(*(sender.send(batched, h) for h in halves))
        await asyncio.gather(*(f for fs in futures for f in fs))
    finally:
        await producer.stop()

    by_plain = {k: p for p, k, _ in await _read(kafka.bootstrap, plain, len(records))}
    got = await _read(kafka.bootstrap, batched, len(records))
    assert sorted(v for _, _, v in got) == sorted(v for _, v in records)
    assert all(by_plain[k] == p for p, k, _ in got)
    for partition in range(PARTITIONS):
        values = [v for p, _, v in got if p == partition]
        assert values == sorted(values), "records of a partition arrive in the order sent"
