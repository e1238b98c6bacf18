"""The ceilings every product figure is compared with, measured minutes before on the same
machine: the broker's ProducerPerformance, a bare aiokafka produce loop (acks=all,
idempotent) and getmany loop, and ingest with Kafka taken out of the request."""

import asyncio
import re
import subprocess
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench import payloads
from bench.processes import loadgen
from bench.stage import INGEST_SETTINGS, Stage
from devtools.localstack import free_port
from devtools.localstack.kafka import ensure_kafka_jars
from tiendo.event import Event, encode
from tiendo.kafka import RecordBatches, reliable_producer

BARE_TOPIC = "bench-bare"


def keyed(events: Iterable[Event]) -> list[tuple[bytes, bytes]]:
    """(key, value) records as ingest puts them on the events topic: keyed by unit."""
    return [(e.unit.encode(), encode(e)) for e in events]


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
    bootstrap: str, topic: str, encoded: list[tuple[bytes, bytes]], *, batched: bool = False
) -> dict[str, Any]:
    """A produce loop with nothing else to do: `send` per record (the plain aiokafka loop),
    or, `batched`, 1,000-record requests as whole record batches (what ingest does), four
    in flight as the load generator keeps four requests in flight."""
    producer = reliable_producer(bootstrap, client_id="bench-bare", linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    if batched:
        batches = RecordBatches(producer)
        chunks = [encoded[i : i + 1000] for i in range(0, len(encoded), 1000)]

        async def worker() -> None:
            while chunks:
                await asyncio.gather(*await batches.send(topic, chunks.pop()))

        await asyncio.gather(*(worker() for _ in range(4)))
    else:
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


async def measure_ceilings(stage: Stage) -> None:
    sizes, bootstrap, results = stage.sizes, stage.broker.bootstrap, stage.results
    sample = payloads.events(sizes.events, starts_at=stage.campaign.starts_at, prefix="bare")
    encoded = keyed(sample)
    size = round(sum(len(v) for _, v in encoded) / len(encoded))
    results["ceiling_producer_performance"] = producer_performance(bootstrap, sizes.events, size)
    results["ceiling_bare_produce"] = await bare_produce(bootstrap, BARE_TOPIC, encoded)
    results["ceiling_bare_produce_batched"] = await bare_produce(
        bootstrap, BARE_TOPIC, encoded, batched=True
    )
    # both produce loops above wrote the sample: twice its size to read back
    results["ceiling_bare_consume"] = await bare_consume(bootstrap, BARE_TOPIC, sizes.events * 2)

    port = free_port()
    stub = await stage.serve(
        ["bench.stub_ingest"], stage.env("ingest", port=port, **INGEST_SETTINGS), "stub", port
    )
    results["ceiling_ingest_without_kafka"] = loadgen(
        f"http://127.0.0.1:{port}/v1/events",
        stage.token,
        sizes.events,
        sizes.concurrency,
        prefix="stub",
    )
    stub.stop()
