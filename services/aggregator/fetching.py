"""A replica's batch as several transactions applied side by side, one per connection
(`apply_connections`), each of whole partitions.

One connection applies one statement at a time, so a replica used one PostgreSQL core
however many the server has (on the benchmark's box, PostgreSQL's one backend was the
apply's bound while the replica's own core stood two thirds idle). Each part is a
transaction of its own that commits its partitions' next offsets with their counters,
just as two replicas' batches do: a partition is never split between two parts, so a
failed part can only replay its partitions, never skip one of another part's. The
rules that make two replicas safe side by side (rows locked in one order, a citizen's
winner under its lock) make the parts safe; every part of a round commits before the
next round starts, so each partition's batches still apply in order.

Parts are dealt by records, not by partition number, and each is then topped up from its
own partitions' buffered records: three partitions over two parts would otherwise give
one part twice the other's work, and the round would wait on the larger."""

import asyncio
import heapq
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

# Records taken from the fetcher's buffer at a time (`consumer.YIELD_EVERY` says why the
# loop must turn between them).
FETCH_SLICE = 500


async def fetch(
    consumer: AIOKafkaConsumer,
    timeout_ms: int,
    max_records: int,
    *partitions: TopicPartition,
) -> dict[TopicPartition, list[Any]]:
    """Up to `max_records` records (of `partitions`, or of every assigned one), waiting up
    to `timeout_ms` for the first: taken from the fetcher's buffer a slice at a time
    (aiokafka unpacks a `getmany`'s records without handing the loop back), then what else
    is buffered, without waiting again."""
    batches: dict[TopicPartition, list[Any]] = {}
    taken = 0
    wait = timeout_ms
    while taken < max_records:
        part = await consumer.getmany(
            *partitions, timeout_ms=wait, max_records=min(FETCH_SLICE, max_records - taken)
        )
        if not part:
            break
        for tp, records in part.items():
            batches.setdefault(tp, []).extend(records)
            taken += len(records)
        wait = 0
        # (getmany returns buffered records without handing the loop back)
        await asyncio.sleep(0)
    return batches


def share_partitions(
    records: Mapping[TopicPartition, int], ways: int
) -> list[list[TopicPartition]]:
    """`records`' partitions dealt into at most `ways` groups, each to the group with the
    fewest records so far, largest first (and a partition with none to the group with
    fewest partitions, so that every group has some to top up from): each partition in
    exactly one group, no group empty, in a fixed order for the same input."""
    groups: list[list[TopicPartition]] = [[] for _ in range(min(ways, len(records)))]
    # (records, partitions, index): the lightest group first
    heap = [(0, 0, i) for i in range(len(groups))]
    for tp in sorted(records, key=lambda tp: (-records[tp], tp.topic, tp.partition)):
        taken, count, i = heapq.heappop(heap)
        groups[i].append(tp)
        heapq.heappush(heap, (taken + records[tp], count + 1, i))
    return groups


async def fetch_parts(
    consumer: AIOKafkaConsumer, timeout_ms: int, max_records: int, ways: int
) -> list[dict[TopicPartition, list[Any]]]:
    """Up to `ways` parts of at most `max_records` records each, of whole partitions:
    one fetch waiting up to `timeout_ms` for the first record, dealt by records over the
    assigned partitions, then each part topped up from its partitions without waiting."""
    fetched = await fetch(consumer, timeout_ms, max_records)
    if not fetched or ways == 1:
        return [fetched] if fetched else []
    counts = {tp: len(fetched.get(tp, ())) for tp in consumer.assignment() | fetched.keys()}
    parts: list[dict[TopicPartition, list[Any]]] = []
    for group in share_partitions(counts, ways):
        part = {tp: fetched[tp] for tp in group if tp in fetched}
        missing = max_records - sum(counts[tp] for tp in group)
        if missing > 0:
            # (a partition revoked meanwhile is simply not in the fetcher's buffer)
            for tp, more in (await fetch(consumer, 0, missing, *group)).items():
                part.setdefault(tp, []).extend(more)
        if part:
            parts.append(part)
    return parts
