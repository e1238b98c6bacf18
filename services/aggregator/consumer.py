"""consume → decode → apply → persist (one transaction with the offsets) → publish → commit.

A round's batch is applied in parts side by side, each a transaction of whole partitions
on a connection of its own (`fetching`, `apply_connections`). PostgreSQL, not the broker,
holds the authoritative position: each part's counters and the next offsets of its
partitions commit together, and on (re)assignment the consumer seeks to
what PostgreSQL says. A crash between the two can replay a batch, never skip one; a replay
changes nothing because every event_id is applied once (the events table's primary key).
"""

import asyncio
import contextlib
import functools
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

from services.aggregator import ahead, deadletters, feed
from services.aggregator.broker_offsets import SeekToStoredPositions, report_offsets
from services.aggregator.fetching import fetch_parts
from services.aggregator.guard import CampaignGuard
from services.aggregator.inflight import InFlight
from services.aggregator.lag import Positions, PositionsMovedBack
from services.aggregator.lag import watch as watch_lag
from services.aggregator.metrics import AggregatorMetrics
from services.aggregator.prepared import CANNOT_STORE, Prepared, unstorable
from services.aggregator.repository import ahead as ahead_sql
from services.aggregator.repository import apply as apply_sql
from services.aggregator.repository import positions as position_sql
from services.aggregator.repository.positions import DeadLetter
from services.aggregator.settings import AggregatorSettings
from tiendo import counting
from tiendo.background import Beat
from tiendo.board.repository import Counter
from tiendo.clock import Clock
from tiendo.counting.batch import staging_row
from tiendo.events.progress_event import UndecodableEvent, decode
from tiendo.kafka import start_whole
from tiendo.logs import get_logger
from tiendo.producers import ReplacedProducer, acknowledged

log = get_logger(__name__)

# What PostgreSQL fails a part's transaction with when it lost to another's locks: the
# part is applied again (`Applier._again`), up to PART_ATTEMPTS more times.
LOST_TO_A_DEADLOCK = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
PART_ATTEMPTS = 3


# Records decoded (or unpacked by the fetcher) between two turns of the event loop: each
# statement of the transaction in flight waits for the loop's next turn to be sent, and
# 1,000 records (8 ms) between turns, with a 20,000-record fetch unpacked in one go (0.1 s),
# left PostgreSQL idle for a sixth of each batch (the apply through Kafka, 500,000 events:
# 26,500 events/s; 30,100 at 200 and 2,000; 32,000 at these; 33,000 at 20 and 200).
YIELD_EVERY = 50
# Seconds the broker may take to acknowledge a batch's progress updates before the batch
# goes on without them (they are still sent; the next change of a key, and every start,
# publish it again): a broker that does not answer must not hold the counting.
PUBLISH_TIMEOUT = 15.0


# Records dead-lettered for failing alone (`apply_isolating`), within an hour, before a
# failure is taken for the apply's own: a fault of every record (a broken migration's
# check) sets aside at most these an hour, which a redrive brings back once it is fixed.
MAX_UNSTORABLE = 5
UNSTORABLE_WITHIN_SECONDS = 3600.0
# Seconds between two looks, while idle, for stored offsets a rebuild moved back.
MOVED_BACK_LOOK_SECONDS = 5.0


class Applier:
    def __init__(
        self,
        settings: AggregatorSettings,
        pool: asyncpg.Pool,
        producers: ReplacedProducer,
        metrics: AggregatorMetrics,
        clock: Clock,
        *,
        publish_feed: bool = True,
        guard: CampaignGuard | None = None,
    ) -> None:
        self._settings = settings
        self._guard = guard or CampaignGuard()
        self._pool = pool
        self._producers = producers
        self._metrics = metrics
        self._clock = clock
        # A rebuild publishes the whole feed once at the end instead of after every batch.
        self._publish_feed = publish_feed
        # the next offset to apply of each partition held, for the lag (`lag.watch`)
        self._positions = Positions()

    async def run(self, beat: Beat = lambda: None) -> None:
        """Consume until cancelled; `beat` after every poll (its supervisor's heartbeat)."""
        s = self._settings
        # (re)started after a failure, perhaps a campaign's row edited into something
        # unusable: check the campaigns again before the first batch
        self._guard.invalidate()
        consumer = AIOKafkaConsumer(
            s.topic_events,
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.group_id,
            client_id="tiendo-aggregator",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1_048_576,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        inflight = InFlight()
        consumer.subscribe(
            [s.topic_events],
            listener=SeekToStoredPositions(
                consumer,
                self._pool,
                s.group_id,
                s.topic_events,
                self._metrics.lag,
                inflight,
                self._positions,
            ),
        )
        watching: asyncio.Task[None] | None = None
        try:
            await start_whole(consumer)
            # the lag on a clock too: while a batch waits (a re-plan's lock, PostgreSQL
            # away) nothing commits, and the records piling up must still show
            watching = asyncio.create_task(watch_lag(consumer, self._positions, self._metrics.lag))
            async with contextlib.AsyncExitStack() as held:
                conns = [
                    await held.enter_async_context(self._pool.acquire())
                    for _ in range(s.apply_connections)
                ]
                for conn in conns:
                    await apply_sql.prepare(conn)
                next_look = time.monotonic() + MOVED_BACK_LOOK_SECONDS
                while True:
                    parts = await fetch_parts(
                        consumer, s.poll_timeout_ms, s.batch_max_records, len(conns)
                    )
                    beat()
                    if not parts:
                        await inflight.wait()
                        # idle, nothing reaches the check in the apply's transaction: a
                        # rebuild that died midway would leave the counters short for good
                        if time.monotonic() >= next_look:
                            next_look = time.monotonic() + MOVED_BACK_LOOK_SECONDS
                            async with self._pool.acquire() as conn, conn.transaction():
                                # not while a rebuild holds the lock: mid-replay, its
                                # offsets are behind ours and it is not dead
                                if await counting.try_lock_apply(conn):
                                    await self._refuse_moved_back(conn)
                        continue
                    # decoded while the previous round's transactions run
                    prepared = [await self.prepare(part) for part in parts]
                    next_offsets = {p: o for part in prepared for p, o in part.next_offsets.items()}
                    await inflight.submit(
                        self.apply_parts(conns, prepared),
                        functools.partial(self._report_to_broker, consumer, next_offsets),
                    )
        finally:
            if watching is not None:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
            await inflight.cancel()
            await consumer.stop()
            # stopping leaves the group without a revocation: a partition the restarted
            # consumer is not given back would keep this replica's last lag beside its
            # new holder's (counted twice on the boards)
            self._positions.clear()
            self._metrics.lag.clear()

    async def _report_to_broker(
        self, consumer: AIOKafkaConsumer, next_offsets: dict[int, int]
    ) -> None:
        await report_offsets(consumer, self._settings.topic_events, next_offsets, self._metrics.lag)

    async def prepare(self, batches: dict[TopicPartition, list[Any]]) -> Prepared:
        """Decode a fetched batch, handing the loop back now and then: a transaction in
        flight needs it to send its next statement."""
        rows: list[tuple[Any, ...]] = []
        payloads: dict[tuple[int, int], bytes] = {}
        dead: list[DeadLetter] = []
        next_offsets: dict[int, int] = {}
        count = 0
        for tp, records in batches.items():
            for record in records:
                count += 1
                if count % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                next_offsets[tp.partition] = record.offset + 1
                try:
                    event = decode(record.value)
                except UndecodableEvent as exc:
                    dead.append(
                        DeadLetter(tp.partition, record.offset, None, str(exc), record.value or b"")
                    )
                    continue
                payloads[tp.partition, record.offset] = record.value
                rows.append(staging_row(event, tp.partition, record.offset))
        return Prepared(count, rows, payloads, dead, next_offsets)

    async def apply_parts(self, conns: Sequence[Any], parts: Sequence[Prepared]) -> None:
        """A round's parts, each in its own transaction on its own connection, side by
        side (`fetching`); over when every one is. A failed part's error is raised once
        the others are over: each of them commits or fails on its own. (Cancelling them
        stalled the consumer: two parts that deadlock lose one transaction to
        PostgreSQL's detector, and cancelling the other too left nothing committed, so
        the restart fetched the same round and deadlocked again, 40 times in 8 minutes.)
        A part the detector failed is applied again (`_again`) before the round is over."""
        outcomes = await asyncio.gather(
            *(self.apply_isolating(c, p) for c, p in zip(conns, parts, strict=False)),
            return_exceptions=True,
        )
        failure: BaseException | None = None
        for conn, part, outcome in zip(conns, parts, outcomes, strict=False):
            if isinstance(outcome, LOST_TO_A_DEADLOCK):
                try:
                    await self._again(conn, part, outcome)
                except Exception as e:
                    failure = failure or e
            elif isinstance(outcome, BaseException):
                failure = failure or outcome
        if failure is not None:
            # (the supervisor logs and restarts on the error itself, as with one part)
            raise failure

    async def apply_isolating(self, conn: Any, part: Prepared) -> None:
        """`apply_prepared`, and when the transaction fails on what a record holds
        (`CANNOT_STORE`), the part in halves until the record is alone: a record that
        fails alone is dead-lettered, the rest applied. One such record stopped its
        partition for good (each restart fetched it again), with every event behind it
        uncounted; §4.1's rules keep the ones foreseen out at decoding."""
        try:
            await self.apply_prepared(conn, part)
        except CANNOT_STORE as error:
            log.warning("part_isolating", records=part.records, error=repr(error))
            # A campaign edited into something unusable behind the guard's back (a time
            # zone PostgreSQL refuses) fails every batch with a data error too: checked
            # again first, it is left out and the part goes through whole.
            self._guard.invalidate()
            try:
                await self.apply_prepared(conn, part)
            except CANNOT_STORE as again:
                await self._isolate(conn, part, again)
            self._metrics.parts_isolated.inc()

    async def _isolate(self, conn: Any, part: Prepared, error: Exception) -> None:
        halves = part.halves()
        if halves is None:
            letter = part.unstorable(error)
            if letter is None or not await self._may_set_aside(conn):
                raise error
            await self.apply_prepared(conn, letter)
            return
        for half in halves:
            try:
                await self.apply_prepared(conn, half)
            except CANNOT_STORE as again:
                await self._isolate(conn, half, again)

    async def _may_set_aside(self, conn: Any) -> bool:
        """Whether one more record may be set aside as `cannot be stored`: not past
        MAX_UNSTORABLE in the last hour, counted in PostgreSQL (every replica and every
        restart). A fault of every record is the apply's, not theirs: past the cap the
        consumer fails as before, and `/readyz` says so."""
        recent = await position_sql.recent_unstorable(conn, UNSTORABLE_WITHIN_SECONDS)
        if recent >= MAX_UNSTORABLE:
            log.error("unstorable_cap_reached", recent=recent, within=UNSTORABLE_WITHIN_SECONDS)
            return False
        return True

    async def _again(self, conn: Any, part: Prepared, error: Exception) -> None:
        """Apply a part again after PostgreSQL's deadlock detector failed it, at once,
        on its own connection: its transaction left nothing behind, and the sibling it
        waited on is over. Failing instead restarted the consumer, whose rejoin
        rebalanced every replica's partitions: seconds without counting, for a lock
        order the next attempt almost never meets again (another replica's batch can)."""
        last = error
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(LOST_TO_A_DEADLOCK),
            stop=stop_after_attempt(PART_ATTEMPTS),
            wait=wait_random(0, 0.05),
            reraise=True,
        ):
            with attempt:
                self._metrics.parts_applied_again.inc()
                log.warning(
                    "part_applied_again",
                    partitions=sorted(part.next_offsets),
                    attempt=attempt.retry_state.attempt_number,
                    error=str(last),
                )
                try:
                    await self.apply_prepared(conn, part)
                except LOST_TO_A_DEADLOCK as e:
                    last = e
                    raise

    async def apply_prepared(self, conn: Any, prepared: Prepared) -> None:
        """One transaction: dedup, count, roll up, dead letters and the next offsets; the
        events ahead of the clock held for their moment (`ahead`)."""
        started = time.perf_counter()
        # (a copy: a part applied again starts from its own dead letters, not the last try's)
        payloads, dead = prepared.payloads, list(prepared.dead)
        next_offsets = prepared.next_offsets
        async with conn.transaction():
            # under the apply lock: an admin change has committed, or waits for this batch
            await counting.lock_apply(conn)
            await self._refuse_moved_back(conn)
            await self._guard.ensure_fresh(conn)
            rows, held = ahead.split(prepared.rows, payloads, self._clock.now())
            if held:
                await ahead_sql.hold(conn, held)
            outcome, dead = await self._apply_rows(conn, rows, payloads, dead)
            await position_sql.save_offsets(
                conn, self._settings.group_id, self._settings.topic_events, next_offsets
            )
            changed = await feed.load(conn, outcome.changed) if self._publish_feed else []
        self._positions.committed(next_offsets)
        if held:
            until = max(h.row[ahead.OCCURRED_AT] for h in held)
            log.info("events_held", events=len(held), until=until.isoformat())
        await self._settled(
            started, outcome, len(rows), dead, rows, changed, unstaged=len(prepared.dead)
        )
        log.info(
            "batch_applied",
            records=prepared.records,
            new_events=outcome.new_events,
            dead_letters=len(dead),
            held=len(held),
            offsets={str(p): o - 1 for p, o in next_offsets.items()},
        )
        if changed:
            await self._publish(changed, self._clock.now())

    async def _refuse_moved_back(self, conn: Any) -> None:
        """Raise `PositionsMovedBack` when a rebuild has moved the stored offsets behind
        this replica's (under the apply lock, so a rebuild's are committed)."""
        stored = await position_sql.load_offsets(
            conn, self._settings.group_id, self._settings.topic_events
        )
        moved = self._positions.moved_back(stored)
        if moved:
            raise PositionsMovedBack(moved)

    async def release_held(self, beat: Beat = lambda: None) -> None:
        """Apply the held events whose moment has come, every `held_check_seconds`, until
        cancelled; `beat` after every look."""
        every = self._settings.held_check_seconds
        async with self._pool.acquire() as conn:
            await apply_sql.prepare(conn)
            while True:
                try:
                    released = await self.release_due(conn)
                except LOST_TO_A_DEADLOCK as e:
                    # nothing of it committed: the events stay held for the next look
                    log.warning("held_release_again", error=str(e))
                    released = 0
                except CANNOT_STORE as e:
                    released = await self._release_one_by_one(conn, e)
                self._metrics.events_held.set(await ahead_sql.count_held(conn))
                beat()
                if released < self._settings.batch_max_records:
                    await asyncio.sleep(every)

    async def _release_one_by_one(self, conn: Any, error: Exception) -> int:
        """The due held events one at a time, after their batch failed on what one of
        them holds (`apply_isolating`'s rule for held events): an event refused alone is
        dead-lettered, the others applied. Returns how many were taken."""
        log.warning("held_isolating", error=repr(error))
        self._guard.invalidate()
        taken = 0
        while taken < self._settings.batch_max_records and await self.release_due(conn, limit=1):
            taken += 1
        self._metrics.parts_isolated.inc()
        return taken

    async def release_due(self, conn: Any, limit: int | None = None) -> int:
        """One transaction: take the held events whose moment has come (at most `limit`,
        default a batch), apply them as a consumed batch would be; returns how many were
        taken. A single one PostgreSQL refuses (`CANNOT_STORE`) is dead-lettered in the
        same transaction: the event set aside is the one refused, whichever others
        another replica takes meanwhile."""
        started = time.perf_counter()
        letter: DeadLetter | None = None
        async with conn.transaction():
            await counting.lock_apply(conn)
            await self._guard.ensure_fresh(conn)
            due = await ahead_sql.take_due(
                conn, self._clock.now(), limit or self._settings.batch_max_records
            )
            if not due:
                return 0
            rows = [h.row for h in due]
            payloads = {(h.row[ahead.PARTITION], h.row[ahead.OFFSET]): h.payload for h in due}
            try:
                async with conn.transaction():  # (a savepoint: only the apply is undone)
                    outcome, dead = await self._apply_rows(conn, rows, payloads, [])
                    changed = await feed.load(conn, outcome.changed) if self._publish_feed else []
            except CANNOT_STORE as refused:
                if len(due) > 1 or not await self._may_set_aside(conn):
                    raise
                letter = unstorable(due[0].row, due[0].payload, refused)
                await self._dead_letter(conn, [letter])
                outcome, dead, changed, rows = counting.BatchOutcome(0, []), [letter], [], []
        await self._settled(
            started, outcome, len(rows), dead, rows, changed, unstaged=1 if letter else 0
        )
        log.info(
            "held_events_applied",
            records=len(due),
            new_events=outcome.new_events,
            dead_letters=len(dead),
        )
        if changed:
            await self._publish(changed, self._clock.now())
        return len(due)

    async def _apply_rows(
        self,
        conn: Any,
        rows: list[tuple[Any, ...]],
        payloads: dict[tuple[int, int], bytes],
        dead: list[DeadLetter],
    ) -> tuple[counting.BatchOutcome, list[DeadLetter]]:
        """Inside the caller's transaction: stage `rows`, apply them; dead-letter what
        cannot be applied (with what `dead` already holds)."""
        outcome = counting.BatchOutcome(0, [])
        if rows:
            await counting.stage(conn, rows)
            dead += [
                deadletters.from_unappliable(u, payloads)
                for u in await counting.take_unappliable(conn)
            ]
            outcome = await counting.apply(
                conn,
                distinct_ids=len({r[0] for r in rows}) == len(rows),
                unusable=self._guard.ids,
            )
            dead += [deadletters.from_unappliable(u, payloads) for u in outcome.conflicts]
        if dead:
            await self._dead_letter(conn, dead)
        return outcome, dead

    async def _settled(
        self,
        started: float,
        outcome: counting.BatchOutcome,
        staged: int,
        dead: list[DeadLetter],
        rows: list[tuple[Any, ...]],
        changed: list[Counter],
        unstaged: int = 0,
    ) -> None:
        """A committed transaction's metrics and logs (after the commit: a part applied
        again would count its dead letters twice). `unstaged`: the first of `dead`, set
        aside before staging (undecodable, or an event refused alone): not duplicates."""
        committed_at = self._clock.now()
        m = self._metrics
        for d in dead:
            m.dead_letters.labels(deadletters.dead_letter_kind(d)).inc()
            log.warning(
                "event_dead_lettered",
                partition=d.partition,
                offset=d.offset,
                event_id=d.event_id,
                reason=d.reason,
            )
        m.events_applied.inc(outcome.new_events)
        m.duplicates.inc(staged - outcome.new_events - (len(dead) - unstaged))
        m.batches.observe(time.perf_counter() - started)
        for row in rows:
            if (at := row[ahead.RECEIVED_AT]) is not None:
                # from when it could be counted: a held event's wait for its moment is an
                # upstream clock running fast, not the pipeline's delay
                since = max(at, row[ahead.OCCURRED_AT])
                m.freshness.observe(max(0.0, (committed_at - since).total_seconds()))

    async def _dead_letter(self, conn: Any, dead: list[DeadLetter]) -> None:
        # Into the topic first (acknowledged), then recorded with the offsets: a crash in
        # between can repeat a dead letter but never lose one.
        topic = self._settings.topic_dead_letters
        # (a failure fails the batch's transaction, retried by a fresh producer: one that
        # failed may refuse every later batch)
        async with self._producers.sending() as producer:
            futures = [
                await producer.send(
                    topic,
                    d.payload,
                    headers=[
                        ("reason", d.reason.encode()),
                        ("source-partition", str(d.partition).encode()),
                        ("source-offset", str(d.offset).encode()),
                    ],
                )
                for d in dead
            ]
            await acknowledged(futures, PUBLISH_TIMEOUT)
        for d in dead:
            await position_sql.save_dead_letter(conn, self._settings.topic_events, d)

    async def _publish(self, counters: list[Counter], computed_at: datetime) -> None:
        async with self._pool.acquire() as conn:
            campaigns = await feed.load_campaigns(conn, self._guard.ids)
        try:
            async with self._producers.sending() as producer:
                await feed.publish(
                    producer,
                    self._settings.topic_progress,
                    counters,
                    campaigns,
                    computed_at,
                    ack_within=PUBLISH_TIMEOUT,
                )
        except KafkaError as exc:
            # The counters are committed; the notifier's full pass repairs a missed update,
            # and a fresh producer sends the next (one that failed may refuse every later one).
            log.warning("progress_publish_failed", error=repr(exc), rows=len(counters))
