"""Demo traffic through the real ingest API: a backfill of the campaign's first weeks (with
deterministic event_ids, so re-running it is harmless) and then a live trickle."""

import asyncio
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from devtools.demo.seed import INDICATORS, Ward, performance, ward_targets
from tiendo.logs import get_logger

log = get_logger(__name__)
REPORTS_PER_DAY = 2  # wards report at least twice a day (contract §1)


def backfill_events(
    wards: list[Ward], starts_at: datetime, deadline: datetime, until: datetime
) -> Iterator[dict[str, Any]]:
    """Twice-daily increments per ward and indicator from the start until `until`."""
    rng = random.Random(2023)  # same ids, same values: a re-run is deduplicated away
    targets = ward_targets(wards)
    speed = performance(wards)
    days = (deadline - starts_at) / timedelta(days=1)
    slot = timedelta(hours=24 / REPORTS_PER_DAY)
    at = starts_at + timedelta(hours=9)
    n = 0
    while at < until:
        for w in wards:
            for indicator in INDICATORS:
                per_report = targets[w.code, indicator] / days / REPORTS_PER_DAY * speed[w.code]
                value = int(per_report) + (rng.random() < per_report % 1)
                if value <= 0:
                    continue
                yield {
                    "event_id": f"demo-bf-{w.code}-{indicator}-{n}",
                    "unit": w.code,
                    "indicator": indicator,
                    "value": value,
                    "occurred_at": at.isoformat(),
                }
        at += slot
        n += 1


def live_events(wards: list[Ward], now: datetime, count: int) -> list[dict[str, Any]]:
    """A handful of single increments, mostly from wards that keep pace."""
    speed = performance(wards)
    weights = [speed[w.code] ** 3 for w in wards]
    picked = random.choices(wards, weights=weights, k=count)
    return [
        {
            "event_id": f"demo-live-{random.getrandbits(64):016x}",
            "unit": w.code,
            "indicator": random.choice(INDICATORS),
            "value": random.randint(1, 4),
            "occurred_at": now.isoformat(),
        }
        for w in picked
    ]


async def post_all(
    client: httpx.AsyncClient, url: str, token: str, events: list[dict[str, Any]]
) -> None:
    """POST one batch, retrying (same event_ids) until it is accepted."""
    delay = 0.5
    while True:
        try:
            response = await client.post(
                url, json={"events": events}, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            log.info("ingest_unreachable", error=str(exc))
        else:
            if response.status_code == 202:
                return
            # 401 until ingest sees the new demo token, 503 until Kafka is up: wait.
            if response.status_code not in (401, 429, 503):
                raise RuntimeError(f"ingest refused demo events: {response.text}")
            log.info("ingest_not_ready", status=response.status_code)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def run(
    url: str, token: str, wards: list[Ward], starts_at: datetime, deadline: datetime, rate: float
) -> None:
    async with httpx.AsyncClient(timeout=30.0) as client:
        batch: list[dict[str, Any]] = []
        sent = 0
        for event in backfill_events(wards, starts_at, deadline, datetime.now(UTC)):
            batch.append(event)
            if len(batch) == 1000:
                await post_all(client, url, token, batch)
                sent += len(batch)
                batch = []
        if batch:
            await post_all(client, url, token, batch)
            sent += len(batch)
        log.info("demo_backfill_done", events=sent)
        while True:
            count = max(1, int(rate))
            await post_all(client, url, token, live_events(wards, datetime.now(UTC), count))
            await asyncio.sleep(1.0)
