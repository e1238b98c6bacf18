"""Rebuild: recompute every counter from the `progress-events` topic (the system of
record, kept forever), from the beginning or from a moment.

From a moment T: events stored from the first offset at or after T (per partition) are
deleted, counters are recomputed from the events before, and the topic is replayed from
there through the same exactly-once apply as the live consumer. From the beginning:
everything is replayed. Either way the end state equals the live one (the tests compare).
Running aggregators wait on the rebuild's lock and then continue from its offsets.
"""

import time
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.aggregator import admin
from services.aggregator.consumer import Applier
from services.aggregator.feed import republish_all
from services.aggregator.fetching import fetch
from services.aggregator.guard import CampaignGuard
from services.aggregator.inflight import InFlight
from services.aggregator.metrics import AggregatorMetrics
from services.aggregator.repository import ahead as ahead_sql
from services.aggregator.repository import apply as apply_sql
from services.aggregator.repository import positions as position_sql
from services.aggregator.repository import recount as recount_sql
from services.aggregator.repository import reference as reference_sql
from services.aggregator.settings import AggregatorSettings
from tiendo import audit
from tiendo.clock import SystemClock
from tiendo.kafka import TopicSpec, ensure_topics, event_topics, reliable_producer
from tiendo.logs import get_logger
from tiendo.producers import ReplacedProducer

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RebuildReport:
    events: int
    records: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


async def _start_offsets(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], since: datetime | None
) -> dict[TopicPartition, int]:
    beginning = await consumer.beginning_offsets(partitions)
    end = await consumer.end_offsets(partitions)
    if since is None:
        return dict(beginning)
    found = await consumer.offsets_for_times(
        {tp: int(since.timestamp() * 1000) for tp in partitions}
    )
    return {tp: (found[tp].offset if found.get(tp) is not None else end[tp]) for tp in partitions}


async def rebuild(
    settings: AggregatorSettings, since: datetime | None = None, *, actor: str | None = None
) -> RebuildReport:
    """Recompute every counter (from `since`, default the start); the audit log records who
    (`actor`, default the OS user) in the transaction that resets them."""
    started = time.perf_counter()
    await ensure_topics(
        settings.kafka_bootstrap,
        [
            *event_topics(
                settings.topic_events, settings.topic_dead_letters, settings.topic_partitions
            ),
            TopicSpec(settings.topic_progress, settings.topic_partitions, compacted=True),
        ],
    )
    pool = await asyncpg.create_pool(settings.database_url, min_size=2, max_size=4)
    producers = ReplacedProducer(
        lambda: reliable_producer(settings.kafka_bootstrap, client_id="tiendo-rebuild")
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=8 * 1_048_576,
    )
    await producers.get()  # (connected before the work starts)
    await consumer.start()
    lock = await pool.acquire()
    inflight: InFlight | None = None
    guard = CampaignGuard()
    try:
        await lock.execute(recount_sql.LOCK_REBUILD)
        partitions = [
            TopicPartition(settings.topic_events, p)
            for p in sorted(
                consumer.partitions_for_topic(settings.topic_events)
                or await _partitions(consumer, settings.topic_events)
            )
        ]
        consumer.assign(partitions)
        start = await _start_offsets(consumer, partitions, since)
        end = await consumer.end_offsets(partitions)
        async with lock.transaction():
            if since is None:
                await position_sql.clear_history(lock)
            else:
                for forget in (recount_sql.DELETE_EVENTS_FROM, ahead_sql.FORGET_FROM):
                    await lock.execute(
                        forget,
                        [tp.partition for tp in partitions],
                        [start[tp] for tp in partitions],
                    )
            await lock.execute(recount_sql.RECOUNT_SUBJECTS)
            for campaign_id in await reference_sql.campaign_ids(lock):
                await reference_sql.ensure_campaign_rows(lock, campaign_id)
            await guard.refresh(lock)
            await recount_sql.recount(lock, unusable=guard.ids)
            # each apart: one bad campaign must not fail the rebuild of the others
            not_replanned = await admin.replan_every(lock)
            await position_sql.set_offsets(
                lock,
                settings.group_id,
                settings.topic_events,
                {tp.partition: start[tp] for tp in partitions},
            )
            who = actor or audit.default_actor()
            await recount_sql.begin_recount(
                lock,
                started_at=SystemClock().now(),
                actor=who,
                group_id=settings.group_id,
                topic=settings.topic_events,
                replays={tp.partition: (start[tp], end[tp]) for tp in partitions},
            )
            await audit.record(
                lock,
                actor=who,
                action="counters.rebuild",
                subject=settings.topic_events,
                details={
                    "since": since,  # null: from the start, every event replayed
                    "from_offsets": {str(tp.partition): start[tp] for tp in partitions},
                    "group_id": settings.group_id,
                    "campaigns_not_replanned": not_replanned,
                },
            )
        kept = await position_sql.count_events(lock)
        log.info(
            "rebuild_reset",
            kept_events=kept,
            since=since.isoformat() if since else None,
            start={tp.partition: start[tp] for tp in partitions},
        )
        for tp in partitions:
            consumer.seek(tp, start[tp])
        applier = Applier(
            settings,
            pool,
            producers,
            AggregatorMetrics(),
            SystemClock(),
            publish_feed=False,
            guard=guard,
        )
        remaining = {tp for tp in partitions if start[tp] < end[tp]}
        records = 0
        await apply_sql.prepare(lock)
        inflight = InFlight()
        while remaining:
            batches = await fetch(consumer, 1000, settings.batch_max_records, *remaining)
            batches = {tp: [r for r in recs if r.offset < end[tp]] for tp, recs in batches.items()}
            batches = {tp: recs for tp, recs in batches.items() if recs}
            if not batches:
                continue
            # decoded while the previous batch's transaction runs, as the live consumer does
            prepared = await applier.prepare(batches)
            await inflight.submit(applier.apply_isolating(lock, prepared))
            records += sum(len(r) for r in batches.values())
            for tp, recs in batches.items():
                if recs[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
        await inflight.wait()
        await recount_sql.end_recount(lock)
        total = await position_sql.count_events(lock)
        await republish_all(
            pool, await producers.get(), settings.topic_progress, SystemClock(), guard.ids
        )
    finally:
        if inflight is not None:
            await inflight.cancel()
        await lock.execute(recount_sql.UNLOCK_REBUILD)
        await pool.release(lock)
        await consumer.stop()
        await producers.stop()
        await pool.close()
    report = RebuildReport(total, records, time.perf_counter() - started)
    log.info(
        "rebuild_done",
        events=report.events,
        records=report.records,
        seconds=round(report.seconds, 1),
        per_second=round(report.events_per_second),
    )
    return report


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()
