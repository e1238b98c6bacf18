"""The local stack starts real servers that the project's clients speak to, and keeps their
data across restarts: Kafka (KRaft, from Maven's jars) with aiokafka, PostgreSQL with asyncpg.

These tests start their own servers (not the session's), since they stop and kill them."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from devtools.localstack import KafkaBroker, PostgresServer, alive_brokers, free_port


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path / "kafka", free_port(), free_port(), heap="512m")
    await asyncio.to_thread(broker.start)
    yield broker
    await asyncio.to_thread(broker.stop)


@pytest.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[PostgresServer]:
    server = PostgresServer(tmp_path / "pg", free_port())
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)


async def _produce(bootstrap: str, topic: str, value: bytes, key: bytes | None = None) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        metadata = await producer.send_and_wait(topic, value, key=key)
        return int(metadata.offset)
    finally:
        await producer.stop()


async def _consume_all(bootstrap: str, topic: str, *, group: str | None = None) -> list[bytes]:
    """Everything in partition 0 from the group's committed offset (or the start)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=10_000)
        values = [m.value for records in batches.values() for m in records if m.value is not None]
        if group is not None and values:
            await consumer.commit()
        return values
    finally:
        await consumer.stop()


async def test_aiokafka_produces_consumes_and_commits_against_the_local_broker(
    broker: KafkaBroker,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    events, snapshots, group = f"events-{suffix}", f"snapshots-{suffix}", f"group-{suffix}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(events, num_partitions=1, replication_factor=1),
                NewTopic(
                    snapshots,
                    num_partitions=3,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "compact"},
                ),
            ]
        )
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, snapshots)]
        )
        configs = {entry[0]: entry[1] for entry in described[0].resources[0][4]}
        assert configs["cleanup.policy"] == "compact"

        assert await _produce(broker.bootstrap, events, b"first") == 0
        await _produce(broker.bootstrap, snapshots, b"v1", key=b"unit-1")
        assert await _consume_all(broker.bootstrap, events, group=group) == [b"first"]
        offsets = await admin.list_consumer_group_offsets(group)
        assert offsets[TopicPartition(events, 0)].offset == 1
    finally:
        await admin.close()

    # A controlled stop and a start on the same data dir and ports keep records and offsets.
    await asyncio.to_thread(broker.stop)
    await asyncio.to_thread(broker.start)
    assert await _consume_all(broker.bootstrap, events) == [b"first"]
    await _produce(broker.bootstrap, events, b"second")
    assert await _consume_all(broker.bootstrap, events, group=group) == [b"second"]

    # So does a crash: an acks=all record survives SIGKILL of the broker.
    await _produce(broker.bootstrap, events, b"third")
    broker.kill()
    await asyncio.to_thread(broker.start)
    assert await _consume_all(broker.bootstrap, events) == [b"first", b"second", b"third"]
    assert await _consume_all(broker.bootstrap, snapshots) == [b"v1"]


def test_broker_storage_is_formatted_once_and_not_ready_before_start(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "kafka", free_port(), free_port())
    with pytest.raises(OSError):  # noqa: PT011 - any refusal: nothing listens yet
        alive_brokers(broker.port, timeout=0.5)
    assert broker.format_storage() is True
    assert broker.format_storage() is False


async def test_postgres_accepts_connections_and_keeps_commits_across_a_kill_and_a_crash_stop(
    postgres: PostgresServer,
) -> None:
    conn = await asyncpg.connect(postgres.dsn())
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SHOW server_encoding") == "UTF8"
        assert await conn.fetchval("SHOW fsync") == "on"
    finally:
        await conn.close()

    dsn = await asyncio.to_thread(postgres.create_database, "tiendo_probe")
    assert dsn == postgres.dsn("tiendo_probe")
    assert await asyncio.to_thread(postgres.create_database, "tiendo_probe") == dsn
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE t (v int)")
        await conn.execute("INSERT INTO t VALUES (42)")
    finally:
        await conn.close()

    postgres.kill()
    await asyncio.to_thread(postgres.start)  # crash recovery; initdb is not run again
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT v FROM t") == 42
        await conn.execute("INSERT INTO t VALUES (43)")
    finally:
        await conn.close()

    postgres.stop_immediately()  # `-m immediate`: no checkpoint, recovery at the next start
    assert not postgres.running
    await asyncio.to_thread(postgres.start)
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT array_agg(v ORDER BY v) FROM t") == [42, 43]
    finally:
        await conn.close()


def test_database_names_are_checked(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path, free_port())
    with pytest.raises(ValueError, match="identifier"):
        server.create_database('x"; DROP DATABASE postgres; --')
