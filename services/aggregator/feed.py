"""The `unit-progress` feed: the latest figures of each (campaign, unit, indicator)."""

import asyncio
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaProducer

from services.aggregator.repository import progress as progress_sql
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.database import Connection
from tiendo.event import timestamp
from tiendo.events.v1 import events_pb2


def progress_message(
    row: asyncpg.Record, campaign: Campaign, computed_at: datetime
) -> events_pb2.UnitProgress:
    message = events_pb2.UnitProgress(
        campaign_id=campaign.id,
        unit=row["unit"],
        indicator=row["indicator"],
        value=row["value"],
        baseline=row["baseline"],
        target=row["target"],
        starts_at=timestamp(campaign.starts_at),
        deadline=timestamp(row["deadline"] or campaign.deadline),
        computed_at=timestamp(computed_at),
        behind_threshold=campaign.thresholds.behind,
        stale_after_seconds=int(campaign.thresholds.stale_after.total_seconds()),
        level=row["level"],
        parent=row["parent_code"] or "",
        unit_name=row["unit_name"],
        timezone=campaign.timezone,
    )
    if row["last_event_at"] is not None:
        message.last_event_at.CopyFrom(timestamp(row["last_event_at"]))
    return message


def feed_key(campaign_id: str, unit: str, indicator: str) -> bytes:
    return f"{campaign_id}/{unit}/{indicator}".encode()


async def load_rows(conn: Connection, keys: Sequence[tuple[str, str, str]]) -> list[asyncpg.Record]:
    if not keys:
        return []
    return list(
        await conn.fetch(
            progress_sql.SELECT_PROGRESS_KEYS,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        )
    )


async def load_campaigns(conn: Connection, unusable: Collection[str] = ()) -> dict[str, Campaign]:
    """The campaigns, but those flagged unusable (their rows are neither published nor
    exported: a notifier must not take in a zone it cannot resolve)."""
    return {k: c for k, c in (await board.campaigns(conn)).items() if k not in unusable}


async def publish(
    producer: AIOKafkaProducer,
    topic: str,
    rows: Iterable[asyncpg.Record],
    campaigns: dict[str, Campaign],
    computed_at: datetime,
) -> int:
    """Send every row and wait for the acknowledgements; return how many were sent."""
    futures = []
    for row in rows:
        campaign = campaigns.get(row["campaign_id"])
        if campaign is None:
            continue
        message = progress_message(row, campaign, computed_at)
        futures.append(
            await producer.send(
                topic,
                message.SerializeToString(),
                key=feed_key(campaign.id, row["unit"], row["indicator"]),
            )
        )
    await asyncio.gather(*futures)
    return len(futures)
