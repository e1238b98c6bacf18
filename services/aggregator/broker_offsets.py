"""Where the consumer stands with the broker. PostgreSQL holds the real position (the next
offsets commit with the counters): on assignment the consumer seeks to it, and after each
batch the applied offsets are reported to the broker for lag tooling."""

import asyncio
import contextlib

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Gauge

from services.aggregator.inflight import InFlight
from services.aggregator.lag import Positions
from services.aggregator.repository import positions as position_sql
from tiendo.logs import get_logger

log = get_logger(__name__)

# Seconds the broker may take to take the applied offsets before the report is skipped.
BROKER_COMMIT_TIMEOUT = 5.0


async def report_offsets(
    consumer: AIOKafkaConsumer, topic: str, next_offsets: dict[int, int], lag: Gauge
) -> None:
    """A batch's applied offsets, for lag tooling (kafka-consumer-groups), and each
    partition's lag; PostgreSQL holds the real position. Bounded: a broker that does not
    answer must not hold the apply.

    Only for the partitions the replica still holds. This runs after the transaction,
    outside a rebalance's wait (`InFlight`), so a rebalance may have moved some since the
    fetch: aiokafka refuses a commit naming one and asserts on its high watermark (which
    failed the consumer task, and so restarted it and rebalanced the group again, at
    every rebalance), and its lag is the new holder's to report."""
    assigned = consumer.assignment()
    offsets = {
        tp: o for p, o in next_offsets.items() if (tp := TopicPartition(topic, p)) in assigned
    }
    if not offsets:
        return
    try:
        await asyncio.wait_for(consumer.commit(offsets), BROKER_COMMIT_TIMEOUT)
    except (KafkaError, TimeoutError) as exc:
        log.info("broker_commit_skipped", error=repr(exc))
    # (the commit awaited: the assignment may have changed again meanwhile)
    assigned = consumer.assignment()
    for tp, next_offset in offsets.items():
        if tp not in assigned:
            continue
        # (not consumer.position(): it waits for a position lost to a rebalance)
        highwater = consumer.highwater(tp)
        if highwater is not None:
            lag.labels(str(tp.partition)).set(max(0, highwater - next_offset))


class SeekToStoredPositions(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, continue from the offsets committed with the counters."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        pool: asyncpg.Pool,
        group_id: str,
        topic: str,
        lag: Gauge,
        inflight: InFlight,
        positions: Positions,
    ) -> None:
        self._lag = lag
        self._inflight = inflight
        self._positions = positions
        self._consumer = consumer
        self._pool = pool
        self._group_id = group_id
        self._topic = topic

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # The batch being applied commits (or fails) before its partitions change hands,
        # and before the positions are read back on assignment.
        await self._inflight.settle()
        # Another replica reports these now; a stale lag here would double-count on boards.
        self._positions.revoked(tp.partition for tp in revoked)
        for tp in revoked:
            with contextlib.suppress(KeyError):
                self._lag.remove(str(tp.partition))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._pool.acquire() as conn:
            stored = await position_sql.load_offsets(conn, self._group_id, self._topic)
        for tp in assigned:
            # Nothing applied from a partition yet (or the database was reset): replay it
            # from the start (auto_offset_reset=earliest covers a start lost to retention).
            self._consumer.seek(tp, stored.get(tp.partition, 0))
        self._positions.assigned({tp.partition: stored.get(tp.partition, 0) for tp in assigned})
        log.info(
            "partitions_assigned",
            partitions=sorted(tp.partition for tp in assigned),
            positions={p: stored.get(p, 0) for p in sorted(t.partition for t in assigned)},
        )
