"""The apply at national scale: a live batch applied on a dataset of 10 M stored events
and 11,000 units (`bench.national`, built here in a PostgreSQL of its own unless `--dsn`
names one already built), statement by statement, and its insert into `events` index by
index. `make bench` measures the apply on Hà Nội's wards into a table that starts empty;
the apply's next step is chosen from where its time goes at scale.

    python -m bench.apply_at_scale [--dsn postgresql://.../national] [--events N]
                                   [--rounds 6] [--batch 20000]

Every measurement takes a fresh batch of new events (live ones: now, random communes and
indicators) in a transaction it rolls back, so the dataset is unchanged; the first round
(a cold cache) is left out.

- `apply`: the consumer's statements (`counting.apply_events`), each
  statement's time from asyncpg's query logger, named by its constant in
  `tiendo.counting`.
- `insert`: the insert alone with each configuration of indexes (the others dropped in the
  transaction) and orders of the batch, in a shuffled order each round.

Prints one JSON object of medians, with every round's."""

import argparse
import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench import national
from devtools.localstack import PostgresServer, free_port
from tiendo import counting
from tiendo.counting import batch as batch_sql
from tiendo.counting import rollups, rules
from tiendo.event import Event, Kind

# each configuration: the indexes dropped for it, and the order the batch is inserted in
CONFIGURATIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "every index": ((), ""),
    "every index, batch sorted by event_id": ((), "ORDER BY event_id"),
    "every index, batch sorted by unit, indicator, time": (
        (),
        "ORDER BY unit, indicator, occurred_at",
    ),
    "without events_counted_by_day": (("events_counted_by_day",), ""),
    "without events_unit_indicator_time": (("events_unit_indicator_time",), ""),
    "the primary key alone": (("events_counted_by_day", "events_unit_indicator_time"), ""),
}
COLUMNS = ("event_id", "unit", "indicator", "kind", "value", "occurred_at", "source")


class Dataset:
    """The national dataset's communes and indicators, and fresh live batches of them."""

    def __init__(self, communes: list[str], indicators: list[str], stored: int) -> None:
        self.communes = communes
        self.indicators = indicators
        self.stored = stored
        self._rng = random.Random(2026)

    @classmethod
    async def read(cls, conn: asyncpg.Connection) -> "Dataset":
        communes = await conn.fetch("SELECT code FROM units WHERE level = 4 AND valid_to IS NULL")
        indicators = await conn.fetchval(
            "SELECT indicators FROM campaigns WHERE id = $1", national.CAMPAIGN
        )
        stored = await conn.fetchval("SELECT count(*) FROM events")
        return cls([r["code"] for r in communes], list(indicators), stored)

    def shuffled(self, names: list[str]) -> list[str]:
        self._rng.shuffle(names)
        return names

    def events(self, n: int) -> list[Event]:
        now = datetime.now(UTC)
        return [
            Event(
                str(uuid.uuid4()),
                self._rng.choice(self.communes),
                self._rng.choice(self.indicators),
                Kind.INCREMENT,
                1,
                now - timedelta(seconds=self._rng.random() * 5),
            )
            for _ in range(n)
        ]


class StatementTimes:
    """asyncpg's query logger summing each statement's time under its constant's name."""

    def __init__(self, names: dict[str, str]) -> None:
        self._names = names
        self.seconds: dict[str, float] = defaultdict(float)

    def __call__(self, record: Any) -> None:
        query = record.query
        self.seconds[self._names.get(query, " ".join(query.split())[:60])] += record.elapsed


def statement_names() -> dict[str, str]:
    """Each counting statement's text → its constant's name."""
    return {
        value: name
        for module in (batch_sql, rules, rollups)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str)
    }


async def measure_apply(conn: asyncpg.Connection, data: Dataset, rounds: int, n: int) -> Any:
    names = statement_names()
    seconds: dict[str, list[float]] = defaultdict(list)
    totals: list[float] = []
    for round_ in range(rounds + 1):
        events = data.events(n)
        taken = StatementTimes(names)

        tx = conn.transaction()
        await tx.start()
        try:
            with conn.query_logger(taken):
                started = time.perf_counter()
                await counting.apply_events(conn, events)
                total = time.perf_counter() - started
        finally:
            await tx.rollback()
        if round_ > 0:  # the first is a cold cache's
            totals.append(total)
            for name, s in taken.seconds.items():
                seconds[name].append(s)
    whole = statistics.median(totals)
    return {
        "median_ms": round(whole * 1000),
        "events_per_second": round(n / whole),
        "rounds_ms": [round(t * 1000) for t in totals],
        "share_of_median_by_statement": {
            name: round(statistics.median(s) / whole, 3)
            for name, s in sorted(seconds.items(), key=lambda kv: -statistics.median(kv[1]))
            if statistics.median(s) / whole >= 0.005
        },
    }


async def measure_insert(conn: asyncpg.Connection, data: Dataset, rounds: int, n: int) -> Any:
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS batch (event_id text, unit text, indicator text,"
        " kind text, value bigint, occurred_at timestamptz, source text)"
    )
    samples: dict[str, list[float]] = {name: [] for name in CONFIGURATIONS}
    for round_ in range(rounds + 1):
        for name in data.shuffled(list(CONFIGURATIONS)):
            dropped, order = CONFIGURATIONS[name]
            await conn.execute("TRUNCATE batch")
            await conn.copy_records_to_table(
                "batch",
                records=[
                    (e.event_id, e.unit, e.indicator, e.kind.value, e.value, e.occurred_at, "bench")
                    for e in data.events(n)
                ],
                columns=COLUMNS,
            )
            tx = conn.transaction()
            await tx.start()
            try:
                for index in dropped:
                    await conn.execute(f"DROP INDEX {index}")
                started = time.perf_counter()
                await conn.execute(
                    f"INSERT INTO events ({', '.join(COLUMNS)})"
                    f" SELECT * FROM batch {order} ON CONFLICT DO NOTHING"
                )
                if round_ > 0:
                    samples[name].append((time.perf_counter() - started) * 1000)
            finally:
                await tx.rollback()
    return {
        "median_ms": {k: round(statistics.median(v), 1) for k, v in samples.items()},
        "rounds_ms": {k: [round(x) for x in v] for k, v in samples.items()},
    }


async def measure(dsn: str, rounds: int, n: int) -> dict[str, Any]:
    conn = await asyncpg.connect(
        dsn, server_settings={"search_path": "public, ingest, aggregator, notifier"}
    )
    try:
        data = await Dataset.read(conn)
        return {
            "stored_events": data.stored,
            "batch": n,
            "rounds": rounds,
            "apply": await measure_apply(conn, data, rounds, n),
            "insert": await measure_insert(conn, data, rounds, n),
        }
    finally:
        await conn.close()


async def built(dsn: str, events: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await national.build(conn, events)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.apply_at_scale", description=__doc__)
    parser.add_argument("--dsn", help="a national dataset's database (default: build one)")
    parser.add_argument("--events", type=int, default=10_000_000, help="of the dataset built")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batch", type=int, default=20_000)
    args = parser.parse_args()
    if args.dsn:
        print(json.dumps(asyncio.run(measure(args.dsn, args.rounds, args.batch)), indent=1))
        return
    folder = Path(tempfile.mkdtemp(prefix="tiendo-apply-at-scale-"))
    pg = PostgresServer(folder / "pg", free_port())
    pg.start()
    try:
        dsn = pg.create_database("national")
        asyncio.run(built(dsn, args.events))
        print(json.dumps(asyncio.run(measure(dsn, args.rounds, args.batch)), indent=1))
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
