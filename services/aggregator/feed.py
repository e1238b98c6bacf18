"""The `unit-progress` feed: the latest figures of each (campaign, unit, indicator)."""

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaProducer

from services.aggregator.repository import progress as progress_sql
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.board.repository import Counter
from tiendo.clock import Clock
from tiendo.counting import Key
from tiendo.database import Connection
from tiendo.events import unit_progress
from tiendo.events.unit_progress import UnitProgress
from tiendo.producers import acknowledged


def update_of(counter: Counter, campaign: Campaign, computed_at: datetime) -> UnitProgress:
    """The feed's message of one counter."""
    return UnitProgress(
        campaign_id=campaign.id,
        unit=counter.unit,
        indicator=counter.indicator,
        value=counter.value,
        baseline=counter.baseline,
        target=counter.target,
        starts_at=campaign.starts_at,
        deadline=counter.deadline or campaign.deadline,
        last_event_at=counter.last_event_at,
        computed_at=computed_at,
        behind_threshold=campaign.thresholds.behind,
        stale_after=campaign.thresholds.stale_after,
        level=counter.level,
        parent=counter.parent,
        unit_name=counter.unit_name,
        timezone=campaign.timezone,
    )


async def load(conn: Connection, keys: Sequence[Key]) -> list[Counter]:
    """The counters of `keys` (those the batch moved), read in its transaction."""
    if not keys:
        return []
    rows = await conn.fetch(
        progress_sql.SELECT_PROGRESS_KEYS,
        [k.campaign_id for k in keys],
        [k.unit for k in keys],
        [k.indicator for k in keys],
    )
    return [Counter.from_row(r) for r in rows]


async def load_all(conn: Connection) -> list[Counter]:
    """Every counter (a republish after a restart or a rebuild)."""
    return [Counter.from_row(r) for r in await conn.fetch(progress_sql.SELECT_ALL_PROGRESS)]


async def load_campaigns(conn: Connection, unusable: Collection[str] = ()) -> dict[str, Campaign]:
    """The campaigns, but those flagged unusable (their rows are neither published nor
    exported: a notifier must not take in a zone it cannot resolve)."""
    return {k: c for k, c in (await board.campaigns(conn)).items() if k not in unusable}


async def publish(
    producer: AIOKafkaProducer,
    topic: str,
    counters: Iterable[Counter],
    campaigns: dict[str, Campaign],
    computed_at: datetime,
    ack_within: float | None = None,
) -> int:
    """Send every counter and wait for the acknowledgements (at most `ack_within` seconds,
    else `KafkaTimeoutError`; the sends go on); return how many were sent."""
    futures = []
    for counter in counters:
        campaign = campaigns.get(counter.campaign_id)
        if campaign is None:
            continue
        update = update_of(counter, campaign, computed_at)
        futures.append(await producer.send(topic, unit_progress.encode(update), key=update.key))
    await acknowledged(futures, ack_within)
    return len(futures)


async def republish_all(
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    topic: str,
    clock: Clock,
    unusable: Sequence[str] = (),
) -> int:
    """Send every counter: after a restart the feed may have missed the last changes."""
    async with pool.acquire() as conn:
        counters = await load_all(conn)
        campaigns = await load_campaigns(conn, unusable)
    return await publish(producer, topic, counters, campaigns, clock.now())
