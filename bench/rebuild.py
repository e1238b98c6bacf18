"""Measure `tiendo aggregator rebuild` on N events of the Hà Nội demo campaign.

`python -m bench.rebuild --events 1000000`: starts its own Kafka and PostgreSQL (durable
settings, as in production) in a temporary folder, writes N encoded events to the topic,
applies the demo reference data, then times a rebuild from the beginning. Prints the figures
and writes them to bench/results/rebuild.json.
"""

import asyncio
import os
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench import payloads, sized
from bench.world import seed_world
from devtools.localstack import KafkaBroker, PostgresServer, free_port
from services.aggregator.rebuild import rebuild
from services.aggregator.settings import AggregatorSettings
from tiendo.event import encode
from tiendo.kafka import ensure_topics, event_topics, reliable_producer


async def produce(bootstrap: str, topic: str, n: int, starts_at: datetime) -> float:
    producer = reliable_producer(bootstrap, client_id="bench", linger_ms=20)
    await producer.start()
    started = time.perf_counter()
    pending = []
    for e in payloads.events(n, starts_at=starts_at):
        pending.append(await producer.send(topic, encode(e), key=e.unit.encode()))
        if len(pending) >= 20_000:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await producer.stop()
    return time.perf_counter() - started


async def main(n: int) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="tiendo-bench-"))
    pg = PostgresServer(folder / "pg", free_port())
    broker = KafkaBroker(folder / "kafka", free_port(), free_port())
    pg.start()
    broker.start()
    try:
        dsn = pg.create_database("tiendo")
        conn = await asyncpg.connect(dsn)
        campaign = await seed_world(conn)
        settings = AggregatorSettings(database_url=dsn, kafka_bootstrap=broker.bootstrap)
        await ensure_topics(
            broker.bootstrap,
            event_topics(
                settings.topic_events, settings.topic_dead_letters, settings.topic_partitions
            ),
        )
        produce_s = await produce(broker.bootstrap, settings.topic_events, n, campaign.starts_at)
        report = await rebuild(settings)
        assert report.events == n, report
        city = await conn.fetchval("SELECT sum(value) FROM progress WHERE unit = '01'")
        await conn.close()
        return {
            "benchmark": "rebuild",
            "events": n,
            "produce_seconds": round(produce_s, 1),
            "rebuild_seconds": round(report.seconds, 1),
            "rebuild_events_per_second": round(report.events_per_second),
            "city_total": int(city or 0),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "measured_at": datetime.now(UTC).isoformat(),
        }
    finally:
        broker.stop()
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sized.run("rebuild", main)
