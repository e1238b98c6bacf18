"""The consumer lag gauge (`tiendo_aggregator_consumer_lag`) while nothing commits.

The lag was set only after a batch's transaction, so while applying was held up (a
re-plan holding the counters' lock, a cut-over's move retried, PostgreSQL unreachable) the
gauge kept its last value, usually 0, as records piled up: the pipeline board looked
healthy exactly when it was stuck. Here each partition's lag is also worked out on a
clock, from the broker's end offsets and the next offsets PostgreSQL holds for this
replica (`Positions`, kept beside the consumer's own seeks and commits), whatever the
apply is doing."""

import asyncio
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Gauge

from tiendo.logs import get_logger

log = get_logger(__name__)

# Seconds between two looks: under Prometheus's scrape interval, so a board sees a stall
# in its next point.
LAG_EVERY = 5.0
# Seconds the broker may take to tell the end offsets before the look is skipped.
END_OFFSETS_TIMEOUT = 5.0


class Positions:
    """The next offset to apply of each partition the replica holds, as PostgreSQL holds
    it: the stored positions on assignment, then each committed batch's."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}

    def assigned(self, next_offsets: Mapping[int, int]) -> None:
        self._next.update(next_offsets)

    def committed(self, next_offsets: Mapping[int, int]) -> None:
        self._next.update(next_offsets)

    def revoked(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._next.pop(p, None)

    def clear(self) -> None:
        self._next.clear()

    def next_offset(self, partition: int) -> int | None:
        return self._next.get(partition)

    def moved_back(self, stored: Mapping[int, int]) -> dict[int, tuple[int, int]]:
        """The partitions whose next offset PostgreSQL holds is behind this replica's, as
        (stored, held): only a rebuild moves a stored offset back (the apply keeps the
        greatest), and one that died midway left the counters short of what this replica
        had applied (`PositionsMovedBack`)."""
        return {
            p: (stored.get(p, 0), held)
            for p, held in sorted(self._next.items())
            if stored.get(p, 0) < held
        }


class PositionsMovedBack(RuntimeError):
    """A rebuild moved the stored offsets behind the consumer's (`Positions.moved_back`):
    the consumer restarts and seeks to them, replaying what the rebuild did not. Going on
    from its own position would store offsets past the gap (the greatest is kept) and
    leave the events in it out of the counters for good."""

    def __init__(self, moved: Mapping[int, tuple[int, int]]) -> None:
        super().__init__(
            "stored offsets moved back by a rebuild: "
            + ", ".join(f"partition {p} at {s} (held {h})" for p, (s, h) in moved.items())
        )
        self.moved = dict(moved)


async def refresh(consumer: AIOKafkaConsumer, positions: Positions, lag: Gauge) -> None:
    """Each held partition's lag now: its end offset at the broker less the next offset
    to apply. Skipped (logged) when the broker does not answer in time."""
    held = [tp for tp in consumer.assignment() if positions.next_offset(tp.partition) is not None]
    if not held:
        return
    try:
        ends: dict[TopicPartition, int] = await asyncio.wait_for(
            consumer.end_offsets(held), END_OFFSETS_TIMEOUT
        )
    except (KafkaError, TimeoutError) as exc:
        log.info("lag_refresh_skipped", error=repr(exc))
        return
    # (the broker answered: a rebalance may have moved a partition meanwhile, and its lag
    # is then the new holder's to report)
    still = consumer.assignment()
    for tp, end in ends.items():
        next_offset = positions.next_offset(tp.partition)
        if tp in still and next_offset is not None:
            lag.labels(str(tp.partition)).set(max(0, end - next_offset))


async def watch(
    consumer: AIOKafkaConsumer, positions: Positions, lag: Gauge, every: float = LAG_EVERY
) -> None:
    """`refresh` every `every` seconds until cancelled. A look that fails is logged and
    the next one tried: the lag is a report, never a reason to stop counting."""
    while True:
        await asyncio.sleep(every)
        try:
            await refresh(consumer, positions, lag)
        except Exception as exc:  # a report's failure must not end the consumer's task
            log.warning("lag_refresh_failed", error=repr(exc))
