"""`make bench` / `make bench-quick`: ceilings first, then the product, same box, same
payloads, same run. Writes bench/results/latest.json and prints a table.

Every figure is measured against its own ceiling measured minutes before on the same
machine: the broker's ProducerPerformance, a bare aiokafka produce loop (acks=all,
idempotent) and getmany loop, and ingest with Kafka taken out of the request.
"""

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from aiokafka import AIOKafkaConsumer

from bench import payloads
from bench.world import seed_world
from services.aggregator.rebuild import rebuild
from services.aggregator.settings import AggregatorSettings
from services.ingest import repository as ingest_repository
from services.ingest import tokens
from tiendo.event import encode
from tiendo.kafka import TopicSpec, ensure_topics, event_topics, reliable_producer
from tiendo.localstack import KafkaBroker, PostgresServer, free_port
from tiendo.localstack.kafka import ensure_kafka_jars

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass
class Sizes:
    events: int
    freshness_rate: int
    freshness_seconds: int
    rebuild_events: int
    alert_pairs: int
    concurrency: int


class Service:
    """A service in its own process, with its CPU time and peak memory."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("TIENDO_")}
        full_env.update(env)
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                args, env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )
        self.process = psutil.Process(self.popen.pid)
        self.peak_rss = 0

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)

    def cpu_seconds(self) -> float:
        t = self.process.cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


async def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(url)
            await asyncio.sleep(0.3)


def loadgen(
    url: str, token: str, n: int, concurrency: int, rate: float | None = None, prefix: str = "lg"
) -> dict[str, Any]:
    args = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        url,
        "--token",
        token,
        "--events",
        str(n),
        "--concurrency",
        str(concurrency),
        "--prefix",
        prefix,
    ]
    if rate:
        args += ["--rate", str(rate)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def producer_performance(bootstrap: str, n: int, record_size: int) -> dict[str, Any]:
    libs = ensure_kafka_jars()
    out = subprocess.run(
        [
            "java",
            "-Xmx512m",
            "-cp",
            f"{libs}/*",
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            "bench-producer-performance",
            "--num-records",
            str(n),
            "--record-size",
            str(record_size),
            "--throughput",
            "-1",
            "--bootstrap-server",
            bootstrap,
            "--command-property",
            "acks=all",
            "enable.idempotence=true",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"ProducerPerformance failed:\n{out.stdout}\n{out.stderr}")
    last = [line for line in out.stdout.splitlines() if "records sent" in line][-1]
    rate = float(re.search(r"([\d.]+) records/sec", last).group(1))  # type: ignore[union-attr]
    return {"events_per_second": round(rate), "record_size": record_size, "raw": last}


async def bare_produce(
    bootstrap: str, topic: str, encoded: list[tuple[bytes, bytes]]
) -> dict[str, Any]:
    producer = reliable_producer(bootstrap, client_id="bench-bare", linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    pending = []
    for key, value in encoded:
        pending.append(await producer.send(topic, value, key=key))
        if len(pending) >= 5000:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return {"events_per_second": round(len(encoded) / elapsed), "seconds": round(elapsed, 2)}


async def bare_consume(bootstrap: str, topic: str, n: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=4 * 1_048_576,
    )
    await consumer.start()
    got = 0
    started = time.perf_counter()
    while got < n:
        batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
        got += sum(len(r) for r in batches.values())
    elapsed = time.perf_counter() - started
    await consumer.stop()
    return {"events_per_second": round(n / elapsed), "seconds": round(elapsed, 2)}


def metric_value(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def histogram_quantile(text: str, name: str, q: float) -> float | None:
    """q-quantile of a Prometheus histogram, interpolated within buckets as PromQL does."""
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        m = re.match(rf'{name}_bucket{{le="([^"]+)"}} ([\d.e+]+)', line)
        if m:
            buckets.append((float(m.group(1)), float(m.group(2))))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            share = (rank - prev_count) / (count - prev_count) if count > prev_count else 1
            return prev_le + (le - prev_le) * share
        prev_le, prev_count = le, count
    return None


def alert_evaluation(pairs: int) -> dict[str, Any]:
    """The notifier's rule conditions (stale, behind, at_risk) for `pairs` unit states: the
    pure evaluation every clock tick runs, without the database round trips."""
    from services.notifier.rules import Rule, UnitState, conditions

    now = datetime.now(UTC)
    start = now - timedelta(days=20)
    states = [
        UnitState(
            "c",
            f"u{i}",
            "cccd_collected",
            i % 900,
            0,
            1000,
            start,
            start + timedelta(days=50),
            now - timedelta(hours=i % 24),
            0.9,
            timedelta(hours=12),
        )
        for i in range(pairs)
    ]
    started = time.perf_counter()
    holding = dict.fromkeys((Rule.STALE, Rule.BEHIND, Rule.AT_RISK), 0)
    for i, state in enumerate(states):
        _, verdicts = conditions(state, now, state.value - i % 50, True)
        for rule, holds in verdicts.items():
            holding[rule] += holds
    elapsed = time.perf_counter() - started
    return {
        "pairs": pairs,
        "seconds": round(elapsed, 3),
        "holding": {str(k): v for k, v in holding.items()},
    }


async def run(sizes: Sizes, keep: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="tiendo-bench-"))
    logs = folder / "logs"
    logs.mkdir()
    pg = PostgresServer(folder / "pg", free_port())
    broker = KafkaBroker(folder / "kafka", free_port(), free_port())
    pg.start()
    broker.start()
    results: dict[str, Any] = {}
    services: list[Service] = []
    try:
        dsn = pg.create_database("tiendo")
        conn = await asyncpg.connect(dsn)
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
                TopicSpec("bench-bare", settings.topic_partitions),
                TopicSpec(settings.topic_progress, settings.topic_partitions, compacted=True),
            ],
        )

        # -- ceilings ---------------------------------------------------------------------
        sample = list(payloads.events(sizes.events, starts_at=campaign.starts_at, prefix="bare"))
        encoded = [(e.unit.encode(), encode(e)) for e in sample]
        size = round(sum(len(v) for _, v in encoded) / len(encoded))
        results["ceiling_producer_performance"] = producer_performance(
            broker.bootstrap, sizes.events, size
        )
        results["ceiling_bare_produce"] = await bare_produce(
            broker.bootstrap, "bench-bare", encoded
        )
        results["ceiling_bare_consume"] = await bare_consume(
            broker.bootstrap, "bench-bare", sizes.events
        )
        stub_port = free_port()
        env = {
            "TIENDO_INGEST_DATABASE_URL": dsn,
            "TIENDO_INGEST_KAFKA_BOOTSTRAP": broker.bootstrap,
            "TIENDO_INGEST_LOG_LEVEL": "WARNING",
            "TIENDO_INGEST_ENVIRONMENT": "production",
            # the per-token rate limit is a policy, not a cost: keep it out of the figures
            "TIENDO_INGEST_RATE_LIMIT_EVENTS_PER_SECOND": "0",
        }
        stub = Service(
            [sys.executable, "-m", "bench.stub_ingest"],
            {**env, "TIENDO_INGEST_PORT": str(stub_port)},
            logs / "stub.log",
        )
        await wait_http(f"http://127.0.0.1:{stub_port}/readyz")
        results["ceiling_ingest_without_kafka"] = loadgen(
            f"http://127.0.0.1:{stub_port}/v1/events",
            token,
            sizes.events,
            sizes.concurrency,
            prefix="stub",
        )
        stub.stop()

        # -- ingest -----------------------------------------------------------------------
        port = free_port()
        ingest = Service(
            [sys.executable, "-m", "services.cli", "ingest", "serve"],
            {**env, "TIENDO_INGEST_PORT": str(port)},
            logs / "ingest.log",
        )
        services.append(ingest)
        await wait_http(f"http://127.0.0.1:{port}/readyz")
        cpu0 = ingest.cpu_seconds()
        result = loadgen(
            f"http://127.0.0.1:{port}/v1/events",
            token,
            sizes.events,
            sizes.concurrency,
            prefix="ing",
        )
        ingest.sample()
        result["cpu_seconds_per_1000_events"] = round(
            (ingest.cpu_seconds() - cpu0) / sizes.events * 1000, 3
        )
        result["peak_rss_mb"] = round(ingest.peak_rss / 2**20)
        result["ratio_to_bare_produce"] = round(
            result["events_per_second"] / results["ceiling_bare_produce"]["events_per_second"], 2
        )
        results["ingest"] = result

        # -- aggregator apply -------------------------------------------------------------
        agg_port = free_port()
        agg_env = {
            "TIENDO_AGGREGATOR_DATABASE_URL": dsn,
            "TIENDO_AGGREGATOR_KAFKA_BOOTSTRAP": broker.bootstrap,
            "TIENDO_AGGREGATOR_PORT": str(agg_port),
            "TIENDO_AGGREGATOR_LOG_LEVEL": "WARNING",
            "TIENDO_AGGREGATOR_ENVIRONMENT": "production",
            "TIENDO_AGGREGATOR_ADMIN_TOKEN": "bench-admin-token",
        }
        aggregator = Service(
            [sys.executable, "-m", "services.cli", "aggregator", "serve"],
            agg_env,
            logs / "aggregator.log",
        )
        # From the moment the consumer starts (readiness) to the last event applied; the
        # process start-up (imports, migrations, topic checks) is not apply work.
        await wait_http(f"http://127.0.0.1:{agg_port}/readyz")
        t0, count0, cpu0 = time.perf_counter(), 0, aggregator.cpu_seconds()
        while int(await conn.fetchval("SELECT count(*) FROM events")) < sizes.events:
            aggregator.sample()
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
        aggregator.sample()
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{agg_port}/metrics")).text
        in_tx = metric_value(text, "tiendo_aggregator_batch_seconds_sum")
        apply = {
            "events": sizes.events - count0,
            "seconds": round(elapsed, 2),
            "events_per_second": round((sizes.events - count0) / elapsed),
            "events_per_second_inside_transactions": (
                round(sizes.events / in_tx) if in_tx else None
            ),
            "cpu_seconds_per_1000_events": round(
                (aggregator.cpu_seconds() - cpu0) / sizes.events * 1000, 3
            ),
            "peak_rss_mb": round(aggregator.peak_rss / 2**20),
        }
        apply["ratio_to_bare_consume"] = round(
            apply["events_per_second"] / results["ceiling_bare_consume"]["events_per_second"], 2
        )
        results["aggregator_apply"] = apply
        aggregator.stop()

        # -- freshness at a fixed offered load ---------------------------------------------
        aggregator = Service(
            [sys.executable, "-m", "services.cli", "aggregator", "serve"],
            agg_env,
            logs / "aggregator-2.log",
        )
        services.append(aggregator)
        await wait_http(f"http://127.0.0.1:{agg_port}/readyz")
        # A probe batch applied end to end: the consumer has joined and been assigned, so
        # the measured load does not include the group's start-up.
        loadgen(f"http://127.0.0.1:{port}/v1/events", token, 1000, 1, prefix="probe")
        while int(await conn.fetchval("SELECT count(*) FROM events")) < sizes.events + 1000:
            await asyncio.sleep(0.1)
        n = sizes.freshness_rate * sizes.freshness_seconds
        offered = loadgen(
            f"http://127.0.0.1:{port}/v1/events",
            token,
            n,
            sizes.concurrency,
            rate=sizes.freshness_rate,
            prefix="fr",
        )
        while int(await conn.fetchval("SELECT count(*) FROM events")) < sizes.events + 1000 + n:
            await asyncio.sleep(0.2)
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{agg_port}/metrics")).text
        name = "tiendo_aggregator_event_freshness_seconds"
        results["freshness"] = {
            "offered_events_per_second": sizes.freshness_rate,
            "achieved_events_per_second": offered["events_per_second"],
            "events": n,
            "p50_seconds": round(histogram_quantile(text, name, 0.5) or -1, 3),
            "p99_seconds": round(histogram_quantile(text, name, 0.99) or -1, 3),
            "ingest_batch_p99_ms": offered["batch_p99_ms"],
        }
        aggregator.stop()
        ingest.stop()
        services.clear()

        # -- rebuild ----------------------------------------------------------------------
        have = sizes.events + 1000 + n
        if sizes.rebuild_events > have:
            extra = sizes.rebuild_events - have
            await bare_produce(
                broker.bootstrap,
                settings.topic_events,
                [
                    (e.unit.encode(), encode(e))
                    for e in payloads.events(
                        extra, starts_at=campaign.starts_at, prefix="rb", seed_value=3
                    )
                ],
            )
        report = await rebuild(settings)
        results["rebuild"] = {
            "events": report.events,
            "records": report.records,
            "seconds": round(report.seconds, 1),
            "events_per_second": round(report.events_per_second),
        }
        results["alert_evaluation"] = alert_evaluation(sizes.alert_pairs)
        await conn.close()
    finally:
        for s in services:
            s.stop()
        broker.stop()
        pg.stop()
        if keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return results


def table(results: dict[str, Any]) -> str:
    rows = [("figure", "value", "ceiling ratio")]
    for key, r in results.items():
        if not isinstance(r, dict) or key == "machine":
            continue
        value = r.get("events_per_second")
        text = f"{value:,} events/s" if isinstance(value, int) else ""
        if key == "freshness":
            text = f"p50 {r['p50_seconds']} s, p99 {r['p99_seconds']} s"
        if key == "alert_evaluation":
            text = f"{r['pairs']:,} pairs in {r['seconds']} s"
        if key == "ingest":
            text += f", batch p50 {r['batch_p50_ms']} ms p99 {r['batch_p99_ms']} ms"
        if "cpu_seconds_per_1000_events" in r:
            text += (
                f", {r['cpu_seconds_per_1000_events']} CPU s/1000 ev, peak {r['peak_rss_mb']} MB"
            )
        ratio = r.get("ratio_to_bare_produce") or r.get("ratio_to_bare_consume") or ""
        rows.append((key, text, str(ratio)))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under 5 minutes")
    parser.add_argument("--events", type=int)
    parser.add_argument("--freshness-rate", type=int, default=5000)
    parser.add_argument("--freshness-seconds", type=int)
    parser.add_argument("--rebuild-events", type=int)
    parser.add_argument("--alert-pairs", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep data and logs")
    args = parser.parse_args()
    sizes = Sizes(
        events=args.events or (20_000 if args.quick else 200_000),
        freshness_rate=args.freshness_rate,
        freshness_seconds=args.freshness_seconds or (10 if args.quick else 60),
        rebuild_events=args.rebuild_events or (100_000 if args.quick else 10_000_000),
        alert_pairs=args.alert_pairs,
        concurrency=args.concurrency,
    )
    started = time.perf_counter()
    results = asyncio.run(run(sizes, args.keep))
    results["machine"] = {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30),
        "load_average_before": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "quick": args.quick,
        "total_seconds": round(time.perf_counter() - started),
        "measured_at": datetime.now(UTC).isoformat(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    print(table(results))
    print(f"\nwritten to {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()
