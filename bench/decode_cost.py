"""The aggregator's Python CPU per event on its apply path, stage by stage, without Kafka
(and without PostgreSQL unless `--postgres`): what a change to the decoding, the staging
rows or the metrics saves, measured apart from the database's share, which dwarfs it.

    python -m bench.decode_cost [--events 20000] [--runs 15] [--per-request 200]
                                [--postgres]

The records are `--events` events of `bench.payloads` (the benchmark's mix: ward
increments, 30 % subject events, 1 % snapshots), encoded as ingest encodes them
(`encode_all`, one request's events sharing `received_at`, a request every
`--per-request` events), as aiokafka hands them to the consumer. Each stage runs over
all of them `--runs` times, the stages taking turns; the figure is its process CPU
(`time.process_time`) per event, the median over runs (with the fastest and slowest):

- `decode`: `progress_event.decode` of each record;
- `content_hash`: `counting.content.content_hash` of each decoded event;
- `staging_row`: `counting.batch.staging_row` of each (the hash included);
- `prepare`: `Applier.prepare` of the batch, as one fetched part (decode, staging rows,
  payloads, offsets, the loop's turns);
- `settled`: `Applier._settled` of the batch's rows (the freshness histogram, per row);
- `copy` (with `--postgres`, which starts a throwaway PostgreSQL server): asyncpg's
  `copy_records_to_table` of the rows into the staging table, this process's share
  only (encoding and sending; the server's work runs in its own process).

`python_per_event_us` adds `prepare`, `settled` and, when measured, `copy`. Prints one
JSON object. To compare two versions of the code, run this in each, one after the other,
on a quiet box (or several times, and compare medians).
"""

import argparse
import asyncio
import dataclasses
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord, TopicPartition

from bench import payloads
from services.aggregator.consumer import Applier
from services.aggregator.metrics import AggregatorMetrics
from tiendo import counting
from tiendo.clock import ManualClock
from tiendo.counting.batch import staging_row
from tiendo.counting.content import content_hash
from tiendo.events.progress_event import Event, decode, encode_all

TOPIC = "progress-events"
PARTITION = 0
STARTS_AT = datetime(2026, 3, 1, tzinfo=UTC)
SPREAD = timedelta(days=20)
# when ingest received the first request; requests follow at REQUEST_EVERY
RECEIVED_FROM = STARTS_AT + SPREAD
REQUEST_EVERY = timedelta(milliseconds=7)
COMMITTED_AFTER = timedelta(seconds=1.5)
SOURCE = "bench-upstream"


def the_events(n: int, per_request: int) -> list[Event]:
    """The mix, the same for every run: fixed times, one `received_at` per request."""
    mix = payloads.events(n, starts_at=STARTS_AT, until=STARTS_AT + SPREAD, prefix="d")
    return [
        dataclasses.replace(
            e, received_at=RECEIVED_FROM + (i // per_request) * REQUEST_EVERY, source=SOURCE
        )
        for i, e in enumerate(mix)
    ]


def the_records(events: list[Event], per_request: int) -> list[ConsumerRecord[bytes, bytes]]:
    values: list[bytes] = []
    for at in range(0, len(events), per_request):
        values += encode_all(events[at : at + per_request], source=SOURCE)
    return [
        ConsumerRecord(TOPIC, PARTITION, offset, 0, 0, None, value, None, 0, len(value), ())
        for offset, value in enumerate(values)
    ]


def cpu_per_event(
    stages: dict[str, Callable[[], object]], n: int, runs: int
) -> dict[str, dict[str, float]]:
    """Process CPU µs per event of each stage (over `n` events), over `runs` runs: the
    stages take turns within a run, so that a change of the box's load falls on all."""
    taken: dict[str, list[float]] = {name: [] for name in stages}
    for run in range(runs + 1):
        for name, work in stages.items():
            started = time.process_time()
            work()
            if run:  # the first warms the caches and the allocator
                taken[name].append((time.process_time() - started) / n * 1e6)
    return {name: spread(t) for name, t in taken.items()}


def spread(taken: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(taken), 3),
        "min": round(min(taken), 3),
        "max": round(max(taken), 3),
    }


def applier(clock: ManualClock) -> Applier:
    """An Applier for `prepare` and `_settled` only: neither reaches the settings, the
    pool nor the producers."""
    none: Any = None
    return Applier(none, none, none, AggregatorMetrics(), clock)


async def copy_cost(
    rows: list[tuple[Any, ...]], runs: int, server_folder: Path
) -> dict[str, float]:
    import asyncpg

    from devtools.localstack import PostgresServer, free_port
    from tiendo.counting.batch import CREATE_STAGING, STAGING_COLUMNS

    server = PostgresServer(server_folder, free_port(), fast=True)
    server.start()
    try:
        conn = await asyncpg.connect(server.dsn())
        try:
            # (batch_in alone: the other temporary tables copy `events`, not created here)
            await conn.execute(CREATE_STAGING.split(";")[0])
            taken = []
            for run in range(runs + 1):
                async with conn.transaction():  # ON COMMIT DELETE ROWS: empty again after
                    started = time.process_time()
                    await conn.copy_records_to_table(
                        "batch_in", records=rows, columns=STAGING_COLUMNS
                    )
                    if run:  # the first warms asyncpg's introspection cache
                        taken.append((time.process_time() - started) / len(rows) * 1e6)
        finally:
            await conn.close()
    finally:
        server.stop()
    return spread(taken)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    n = args.events
    events = the_events(n, args.per_request)
    records = the_records(events, args.per_request)
    values = [r.value for r in records]
    decoded = [decode(v) for v in values]
    if decoded != events:
        raise SystemExit("decode(encode_all(events)) is not the events")
    rows = [staging_row(e, r.partition, r.offset) for e, r in zip(decoded, records, strict=True)]
    part = {TopicPartition(TOPIC, PARTITION): records}
    clock = ManualClock(
        RECEIVED_FROM + (n - 1) // args.per_request * REQUEST_EVERY + COMMITTED_AFTER
    )
    a = applier(clock)
    outcome = counting.BatchOutcome(n, [])
    loop = asyncio.new_event_loop()
    try:
        stages = {
            "decode": lambda: [decode(v) for v in values],
            "content_hash": lambda: [content_hash(e) for e in decoded],
            "staging_row": lambda: [staging_row(e, PARTITION, o) for o, e in enumerate(decoded)],
            "prepare": lambda: loop.run_until_complete(a.prepare(part)),
            "settled": lambda: loop.run_until_complete(
                a._settled(time.perf_counter(), outcome, n, [], rows, [])
            ),
        }
        figures = cpu_per_event(stages, n, args.runs)
        prepared = loop.run_until_complete(a.prepare(part))
        if prepared.rows != rows:
            raise SystemExit("prepare's rows are not the staging rows")
        if args.postgres:
            folder = Path(tempfile.mkdtemp(prefix="tiendo-decode-cost-"))
            try:
                figures["copy"] = loop.run_until_complete(copy_cost(rows, args.runs, folder / "pg"))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        loop.close()
    python = ["prepare", "settled", *(["copy"] if "copy" in figures else [])]
    return {
        "events": n,
        "runs": args.runs,
        "per_request": args.per_request,
        "us_per_event": figures,
        "python_per_event_us": round(sum(figures[s]["median"] for s in python), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.decode_cost", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--per-request", type=int, default=200, help="events sharing one received_at"
    )
    parser.add_argument(
        "--postgres", action="store_true", help="also asyncpg's COPY (starts PostgreSQL)"
    )
    args = parser.parse_args()
    print(json.dumps(measure(args), indent=1))


if __name__ == "__main__":
    main()
