"""`make bench` / `make bench-quick`: ceilings first, then the product, same box, same
payloads, same run. Writes bench/results/latest.json and prints a table.

Every figure is measured against its own ceiling measured minutes before on the same
machine: the broker's ProducerPerformance, a bare aiokafka produce loop (acks=all,
idempotent) and getmany loop, and ingest with Kafka taken out of the request.

The phases, in order, with their duration at full size on the 2-core VM (the runs of 3
December; each run prints and keeps its own under "phases"): ceilings (~15 s); ingest and
apply with one process each (~40 s and ~30 s); freshness (~80 s); the scale-out, ingest
with `--ingest-workers` processes and apply with `--apply-replicas` replicas (~70-90 s);
the 10 M-event rebuild (8-12 min, filling the topic included); the reads on a national
10 M-event dataset (~5 min to load, 2-3 min to read). About 20-25 minutes in all.
"""

import argparse
import shutil
import tempfile
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import goals, report
from bench.ceilings import BARE_TOPIC, measure_ceilings
from bench.freshness import measure_freshness
from bench.phases import (
    alert_evaluation,
    measure_apply,
    measure_ingest,
    measure_rebuild,
    measure_scale_out,
)
from bench.reads import measure_reads
from bench.stage import Sizes, Stage
from bench.world import seed_world
from devtools.localstack import KafkaBroker, PostgresServer, free_port
from devtools.localstack.kafka import ensure_kafka_jars
from services.aggregator.settings import AggregatorSettings
from services.ingest import repository as ingest_repository
from services.ingest import tokens
from services.schema import migrate_all
from tiendo import eventloop
from tiendo.kafka import TopicSpec, ensure_topics, event_topics


async def phase(results: dict[str, Any], name: str, work: Awaitable[object]) -> None:
    """Run one phase, printing its start and duration and keeping them under "phases"."""
    started = datetime.now(UTC)
    print(f"{started:%H:%M:%S} {name} ...", flush=True)
    t0 = time.perf_counter()
    await work
    seconds = time.perf_counter() - t0
    results.setdefault("phases", {})[name] = {
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
    }
    print(f"{datetime.now(UTC):%H:%M:%S} {name} took {seconds:.0f} s", flush=True)


async def versions(conn: asyncpg.Connection) -> dict[str, str]:
    """PostgreSQL's and the broker's versions, beside the figures they made."""
    jars = sorted(ensure_kafka_jars().glob("kafka_2.13-*.jar"))
    return {
        "postgresql": str(await conn.fetchval("SHOW server_version")),
        "kafka": jars[0].stem.removeprefix("kafka_2.13-") if jars else "",
    }


async def run(sizes: Sizes, keep: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="tiendo-bench-"))
    logs = folder / "logs"
    logs.mkdir()
    pg = PostgresServer(
        folder / "pg",
        free_port(),
        settings={"shared_preload_libraries": "pg_stat_statements"} if sizes.profile else {},
    )
    broker = KafkaBroker(folder / "kafka", free_port(), free_port())
    pg.start()
    broker.start()
    stage: Stage | None = None
    try:
        dsn = pg.create_database("tiendo")
        # The migrations set the database's search_path (the services' schemas), which
        # only sessions opened afterwards get: migrate, then reconnect to seed.
        conn = await asyncpg.connect(dsn)
        await migrate_all(conn)
        await conn.close()
        conn = await asyncpg.connect(dsn)
        if sizes.profile:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        campaign = await seed_world(conn)
        token = tokens.new_token()
        await ingest_repository.insert_token(conn, "bench", tokens.digest(token), [], [])
        settings = AggregatorSettings(database_url=dsn, kafka_bootstrap=broker.bootstrap)
        await ensure_topics(
            broker.bootstrap,
            [
                *event_topics(
                    settings.topic_events, settings.topic_dead_letters, settings.topic_partitions
                ),
                TopicSpec(BARE_TOPIC, settings.topic_partitions),
                TopicSpec(settings.topic_progress, settings.topic_partitions, compacted=True),
            ],
        )
        stage = Stage(sizes, logs, pg, broker, dsn, conn, settings, token, campaign)
        results = stage.results
        await phase(results, "ceilings", measure_ceilings(stage))
        await phase(results, "ingest", measure_ingest(stage))
        await phase(results, "apply", measure_apply(stage))
        await phase(results, "freshness", measure_freshness(stage))
        if sizes.ingest_workers > 1 or sizes.apply_replicas > 1:
            await phase(results, "scale_out", measure_scale_out(stage))
        await phase(results, "rebuild", measure_rebuild(stage))
        await phase(results, "reads", measure_reads(stage))
        results["alert_evaluation"] = alert_evaluation(sizes.alert_pairs)
        results["versions"] = await versions(conn)
        await conn.close()
        return results
    finally:
        for service in stage.services if stage else []:
            service.stop()
        broker.stop()
        pg.stop()
        if keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under 5 minutes")
    parser.add_argument("--events", type=int)
    parser.add_argument("--freshness-rate", type=int, default=5000)
    parser.add_argument(
        "--ingest-rate", type=int, default=20_000, help="sustained ingest load for latency"
    )
    parser.add_argument("--ingest-rate-seconds", type=int)
    parser.add_argument(
        "--apply-replicas",
        type=int,
        default=2,
        help="the scale-out phase's aggregator replicas sharing the apply (1: no scale-out)",
    )
    parser.add_argument(
        "--ingest-workers",
        type=int,
        default=3,
        help="the scale-out phase's ingest processes sharing its port (1: no scale-out)",
    )
    parser.add_argument(
        "--ingest-gzip", action="store_true", help="the load generator gzips every body"
    )
    parser.add_argument("--freshness-seconds", type=int)
    parser.add_argument("--rebuild-events", type=int)
    parser.add_argument("--reads-events", type=int, help="events of the read benchmark's dataset")
    parser.add_argument("--alert-pairs", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep data and logs")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy flame graphs of ingest and the notifier too (the apply's and the slowest"
        " read's are in every run), and the apply's SQL by server time",
    )
    args = parser.parse_args()
    sizes = Sizes(
        events=args.events or (20_000 if args.quick else 200_000),
        freshness_rate=args.freshness_rate,
        freshness_seconds=args.freshness_seconds or (10 if args.quick else 60),
        rebuild_events=args.rebuild_events or (100_000 if args.quick else 10_000_000),
        alert_pairs=args.alert_pairs,
        concurrency=args.concurrency,
        ingest_rate=args.ingest_rate,
        ingest_rate_seconds=args.ingest_rate_seconds or (5 if args.quick else 30),
        apply_replicas=args.apply_replicas,
        profile=args.profile,
        ingest_workers=args.ingest_workers,
        ingest_gzip=args.ingest_gzip,
        reads_events=args.reads_events or (200_000 if args.quick else 10_000_000),
        reads_rate=1000 if args.quick else args.freshness_rate,
        reads_seconds=10 if args.quick else 60,
        reads_rounds=5 if args.quick else 20,
        quick=args.quick,
    )
    before = report.snapshot()
    started = time.perf_counter()
    results = eventloop.run(run(sizes, args.keep))
    results["machine"] = report.machine(
        before, args.quick, time.perf_counter() - started, results.pop("versions")
    )
    results["goals"] = goals.judge(results)
    path = report.write(results, args.quick)
    print(report.table(results))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
