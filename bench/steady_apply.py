"""The read benchmark's writer: events applied at a steady rate with the aggregator's apply
statements (`tiendo.counting.apply_events`), in its own process so that its CPU is not the
readers'. Prints one JSON line: the rate achieved and each event's freshness, from its
acceptance to the commit that makes it visible to every live read.

    python -m bench.steady_apply --dsn ... --rate 5000 --seconds 60

Events arrive as they do live: now, on random communes of the national campaign, the mix of
`bench.national`. Events arrive in ticks of TICK, spread evenly over each; the writer
applies every ended tick's events, all of them in one batch when it fell behind (as the
consumer drains its backlog). Freshness counts the wait in the buffer and the apply."""

import argparse
import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.one_state import INDICATORS
from tiendo import counting
from tiendo.event import Event, Kind
from tiendo.lifespan import collect_for_serving

TICK = 0.2
MAX_TICKS = 25  # 5 s of backlog at most in one batch (the consumer's max records)


def arrivals(rng: random.Random, communes: list[str], n: int, prefix: str) -> list[Event]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        unit, roll = rng.choice(communes), rng.random()
        if roll < 0.01:
            e = Event(
                f"{prefix}{i}", unit, "cccd_collected", Kind.SNAPSHOT, rng.randrange(500), now
            )
        elif roll < 0.31:
            e = Event(
                f"{prefix}{i}",
                unit,
                "eid_activated_l2",
                Kind.INCREMENT,
                1,
                now,
                subject=f"{rng.getrandbits(256):064x}",
            )
        else:
            e = Event(f"{prefix}{i}", unit, rng.choice(INDICATORS), Kind.INCREMENT, 1, now)
        out.append(e)
    return out


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else -1.0


async def steady(dsn: str, rate: int, seconds: float) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    communes = [r["code"] for r in await conn.fetch("SELECT code FROM units WHERE level = 4")]
    collect_for_serving()  # as the aggregator does once started
    rng = random.Random(time.time_ns())
    per_tick = max(1, round(rate * TICK))
    ticks = int(seconds / TICK)
    freshness: list[float] = []
    batch_seconds: list[float] = []
    applied = done = 0  # events applied, ticks whose events are applied
    started = time.perf_counter()
    while done < ticks:
        # every tick that has ended is in the buffer; a writer that fell behind takes them
        # all in one batch, as the consumer takes its whole backlog (up to MAX_TICKS)
        ended = min(ticks, int((time.perf_counter() - started) / TICK))
        if ended <= done:
            await asyncio.sleep(started + (done + 1) * TICK - time.perf_counter())
            continue
        take = min(ended - done, MAX_TICKS)
        events = arrivals(rng, communes, per_tick * take, f"st{uuid.uuid4().hex[:8]}-")
        t0 = time.perf_counter()
        await counting.apply_events(conn, events)
        committed = time.perf_counter()
        batch_seconds.append(committed - t0)
        for tick in range(done, done + take):
            # the tick's events arrived evenly over it
            opened = started + tick * TICK
            freshness.extend(
                committed - (opened + TICK * (i + 0.5) / per_tick) for i in range(per_tick)
            )
        applied += len(events)
        done += take
    elapsed = time.perf_counter() - started
    await conn.close()
    return {
        "offered_events_per_second": rate,
        "events": applied,
        "events_per_second": round(applied / elapsed),
        "batches": len(batch_seconds),
        "batch_events_mean": round(applied / max(1, len(batch_seconds))),
        "batch_p50_seconds": quantile(batch_seconds, 0.5),
        "batch_p99_seconds": quantile(batch_seconds, 0.99),
        "freshness_p50_seconds": quantile(freshness, 0.5),
        "freshness_p99_seconds": quantile(freshness, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.steady_apply", description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(steady(args.dsn, args.rate, args.seconds))))


if __name__ == "__main__":
    main()
