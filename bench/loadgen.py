"""Load generator, run in its own process: POSTs batches of the benchmark's event mix to
ingest and reports throughput and per-batch latency as JSON on stdout.

`python -m bench.loadgen --url … --token … --events N [--rate R] [--concurrency C]`:
without --rate it sends as fast as ingest answers (throughput); with --rate it paces the
batches to R events/s (fixed offered load, for freshness); with --gzip each body is gzipped
(before the clock starts) and sent with `Content-Encoding: gzip`."""

import argparse
import asyncio
import gzip
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import orjson

from bench import payloads
from tiendo import eventloop
from tiendo.event import to_json


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(
    url: str,
    token: str,
    n: int,
    batch: int,
    concurrency: int,
    rate: float | None,
    prefix: str,
    compress: bool = False,
) -> dict[str, object]:
    start = datetime.now(UTC) - timedelta(days=20)
    bodies = []
    chunk: list[dict[str, object]] = []
    for e in payloads.events(n, starts_at=start, prefix=prefix):
        chunk.append(to_json(e))
        if len(chunk) == batch:
            bodies.append(orjson.dumps({"events": chunk}))
            chunk = []
    if chunk:
        bodies.append(orjson.dumps({"events": chunk}))
    plain_bytes = sum(len(b) for b in bodies)
    if compress:
        # level 6, gzip's default: what an upstream's HTTP client would send
        bodies = [gzip.compress(b, 6) for b in bodies]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for i, b in enumerate(bodies):
        queue.put_nowait((i, b))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if compress:
        headers["Content-Encoding"] = "gzip"
    started = time.perf_counter()

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i, body = queue.get_nowait()
            if rate:
                due = started + i * batch / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            while True:
                t0 = time.perf_counter()
                r = await client.post(url, content=body, headers=headers)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 202:
                    latencies.append(time.perf_counter() - t0)
                    break
                await asyncio.sleep(0.2)  # 503/429: retry the same batch (same event_ids)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "events": n,
        "batch": batch,
        "concurrency": concurrency,
        "rate": rate,
        "gzip": compress,
        "body_bytes_per_batch": round(sum(len(b) for b in bodies) / len(bodies)),
        "plain_bytes_per_batch": round(plain_bytes / len(bodies)),
        "seconds": round(elapsed, 2),
        "events_per_second": round(n / elapsed),
        "batch_p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "batch_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "statuses": statuses,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--prefix", default="lg")
    parser.add_argument("--gzip", action="store_true", help="gzip each body")
    args = parser.parse_args()
    result = eventloop.run(
        run(
            args.url,
            args.token,
            args.events,
            args.batch,
            args.concurrency,
            args.rate,
            args.prefix,
            args.gzip,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
