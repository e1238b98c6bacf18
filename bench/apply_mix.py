"""The apply of the benchmark's event mix straight into PostgreSQL, statement by statement:
what a change to the apply's SQL costs, measured apart from Kafka and the consumer, whose
noise on this box (`make bench-quick`) hides a change of a tenth.

    python -m bench.apply_mix [--events 120000] [--batch 17000] [--rounds 3]
                              [--orders random,time] [--stored 0] [--replicas 1]
                              [--explain FILE]

Each round applies the same `--events` events of `bench.payloads` (the run's mix: ward
increments, subject events, 1 % snapshots), spread over the demo campaign's first 20 days,
into a fresh database of its own (`bench.world`: migrations, Hà Nội's units, the demo
campaign) in `--batch`-event batches (`counting.apply_events`, the consumer's statements,
with its `work_mem`), in each order of arrival:

- `random`: as the benchmark sends them, spread at random over the 20 days, so that most
  batches reach back before what a key has stored (the day rollups' late path);
- `time`: sorted by their time, as live reports arrive.

With `--stored N`, each database first holds N other events of the mix over the same 20
days (applied in random order, not timed), as the benchmark's scale-out phase and the
later part of its rebuild find it: a history in which nearly every key with snapshots has
some after a new batch's first report. With `--explain FILE`, PostgreSQL's plans (with
their times) of the timed statements slower than 200 ms are copied to FILE
(`auto_explain`). With `--replicas R`, R connections apply side by side, each its
`--batch` events of the units it would be given (by unit, as Kafka's partitions split
them), as the benchmark's scale-out phase does; statement times are summed over them.

Orders alternate within a round, so that a change of the box's speed falls on both. Each
statement's time comes from asyncpg's query logger, named by its constant in
`tiendo.counting`. To compare two versions of the code, run this in a checkout of each, one
after the other, and read `events_per_second` and the statements' medians.

Prints one JSON object: per order, the median over rounds, with every round's."""

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import tempfile
import time
import zlib
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench import payloads
from bench.apply_at_scale import StatementTimes, statement_names
from bench.world import seed_world
from devtools.localstack import PostgresServer, free_port
from services.aggregator.repository.apply import APPLY_WORK_MEM
from tiendo import counting
from tiendo.event import Event
from tiendo.logs import configure_logging

SPREAD_DAYS = 20
ORDERS = ("random", "time")
EXPLAIN_SLOW = """
LOAD 'auto_explain';
SET auto_explain.log_min_duration = '200ms';
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
"""


def arranged(events: list[Event], order: str) -> list[Event]:
    if order == "time":
        return sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    return events


async def one_round(dsn: str, order: str, args: argparse.Namespace) -> dict[str, Any]:
    """A fresh world holding `--stored` events, then `--events` more applied in `order`:
    the whole time and each statement's."""
    conn = await asyncpg.connect(dsn)
    try:
        campaign = await seed_world(conn)
        await conn.execute(APPLY_WORK_MEM)
        starts_at = campaign.starts_at
        until = starts_at + timedelta(days=SPREAD_DAYS)
        # two streams of the mix (their own ids and citizens): the history, then the timed
        stored = list(payloads.events(args.stored, starts_at=starts_at, until=until, prefix="s"))
        for at in range(0, len(stored), args.batch):
            await counting.apply_events(conn, stored[at : at + args.batch])
        if stored:
            await conn.execute("VACUUM ANALYZE")
        events = arranged(
            list(payloads.events(args.events, starts_at=starts_at, until=until, prefix="b")),
            order,
        )
        if args.explain:
            await conn.execute(EXPLAIN_SLOW)
        taken = StatementTimes(statement_names())
        others = [await asyncpg.connect(dsn) for _ in range(args.replicas - 1)]
        try:
            for other in others:
                await other.execute(APPLY_WORK_MEM)
                if args.explain:
                    await other.execute(EXPLAIN_SLOW)
            appliers = [conn, *others]
            with contextlib.ExitStack() as logging_:
                for applier in appliers:
                    logging_.enter_context(applier.query_logger(taken))
                started = time.perf_counter()
                step = args.batch * len(appliers)
                for at in range(0, len(events), step):
                    parts = by_unit(events[at : at + step], len(appliers))
                    await asyncio.gather(
                        *(
                            counting.apply_events(a, part)
                            for a, part in zip(appliers, parts, strict=True)
                        )
                    )
                total = time.perf_counter() - started
        finally:
            for other in others:
                await other.close()
        return {"seconds": total, "statements": dict(taken.seconds)}
    finally:
        await conn.close()


def by_unit(events: list[Event], n: int) -> list[list[Event]]:
    """`events` split as Kafka's partitions split them among `n` replicas: by unit."""
    parts: list[list[Event]] = [[] for _ in range(n)]
    for e in events:
        parts[zlib.crc32(e.unit.encode()) % n].append(e)
    return parts


def summary(n: int, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    whole = statistics.median(r["seconds"] for r in rounds)
    by_name: dict[str, list[float]] = defaultdict(list)
    for r in rounds:
        for name, seconds in r["statements"].items():
            by_name[name].append(seconds)
    medians = {name: statistics.median(s) for name, s in by_name.items()}
    return {
        "events_per_second": round(n / whole),
        "rounds_events_per_second": [round(n / r["seconds"]) for r in rounds],
        "statement_ms": {
            name: round(ms * 1000)
            for name, ms in sorted(medians.items(), key=lambda kv: -kv[1])
            if ms / whole >= 0.005
        },
    }


async def measure(server: PostgresServer, orders: list[str], args: argparse.Namespace) -> Any:
    taken: dict[str, list[dict[str, Any]]] = {order: [] for order in orders}
    for round_ in range(args.rounds):
        for order in orders if round_ % 2 == 0 else reversed(orders):
            dsn = server.create_database(f"mix_{order}_{round_}")
            taken[order].append(await one_round(dsn, order, args))
    return {
        "events": args.events,
        "batch": args.batch,
        "rounds": args.rounds,
        "stored": args.stored,
        "replicas": args.replicas,
        **{order: summary(args.events, rounds) for order, rounds in taken.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.apply_mix", description=__doc__)
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument("--batch", type=int, default=17_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--orders", default=",".join(ORDERS), help="of " + ", ".join(ORDERS))
    parser.add_argument("--stored", type=int, default=0, help="events stored before, untimed")
    parser.add_argument(
        "--replicas", type=int, default=1, help="connections applying side by side, by unit"
    )
    parser.add_argument("--explain", type=Path, help="copy the slow statements' plans here")
    args = parser.parse_args()
    # the migrations log each file they apply; stdout is the JSON alone
    configure_logging("WARNING", json=False)
    orders = args.orders.split(",")
    if unknown := set(orders) - set(ORDERS):
        parser.error(f"unknown order: {', '.join(sorted(unknown))}")
    folder = Path(tempfile.mkdtemp(prefix="tiendo-apply-mix-"))
    server = PostgresServer(folder / "pg", free_port(), fast=True)
    server.start()
    try:
        print(json.dumps(asyncio.run(measure(server, orders, args)), indent=1))
        if args.explain:
            shutil.copyfile(server.log_file, args.explain)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
