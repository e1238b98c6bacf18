"""What people feel (issue 15): the board's reads on a national campaign, alone and under 50
board viewers while events are applied at a steady rate.

    python -m bench.reads [--events 1000000] [--quick] [--keep]

writes bench/results/reads.json (and reads-flame-read.svg); `make bench` runs the same
phase (`measure_reads`) on its own PostgreSQL and puts it under "reads" in
bench/results/latest.json.

The dataset is `bench.national` (11,000 units, 8 indicators, N events counted from the
history). Each read is the read API's own function (`services.aggregator.progress`,
`tiendo.board`), timed from the call to its last row in Python: PostgreSQL and the Python
that judges, not HTTP or JSON. The reads:

- live progress of the country, a province, a district and a commune (each with its
  children's done count, as `GET /v1/campaigns/{id}/progress/{unit}` computes it);
- the same `as_of` noon (campaign time) three days ago, half a day of events either side;
- the live leaderboard of every commune (10,236), with the ranks a week before, as
  `GET .../leaderboard?level=4` answers its first page: every commune ranked, the page's
  hundred rows judged with their days behind in a row (`leaderboard_communes_live`); and
  the same with every row judged and its days behind read, as the CSV and XLSX exports
  build it (`leaderboard_communes_export`, alone only);
- the unit drill-down of a province (the `tiendo-unit` board's data: its figures and its
  children's per indicator, and its subtree's daily bars).

Under load, 50 clients are 50 board viewers: each refreshes a live board of twelve reads
every ten seconds (`BOARD`, Grafana's refresh; 60 reads/s offered in all), its reads spread
over the period, and a read's latency counts from when its schedule said to send it; a
probe in its own process (`bench.read_probe`) sends every read in turn meanwhile
(`PROBED`), one every half second, timed the same way. Meanwhile the writer
(`bench.steady_apply`, its own process: its CPU is not the readers') applies
events with the aggregator's apply statements at the offered rate; freshness is from an
event's acceptance (its arrival in the writer's buffer) to the commit that makes it
visible to every live read, without the Kafka hop (the `freshness` phase of `make bench`
measures that path). `as_of` of the country is measured alone only (a briefing's read, not
a viewer's).

Ceilings of the same run: a bare primary-key read of one `progress` row (the floor of any
read on this box, alone and under the same load); the floors of the two heavy reads, what
the database must at least pass over for each, summed in place (`as_of` of the country:
the half day of events it reads; the leaderboard: the communes' counters and the week of
day rollups of its indicator); and the writer's freshness with no readers. Alone, every
round sends each read once, the ceilings too, so that a drift of the box's speed during
the phase weighs on a read and its ceiling alike. The slowest read alone gets the
`EXPLAIN (ANALYZE, BUFFERS)` of its slowest statement and a py-spy flame graph of this
process running it (`flame-read.svg`), and the dataset's tables their bytes per row
(`storage`, what docs/capacity.md sizes from).
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from bench import national
from bench.processes import ROOT
from bench.profiling import FlameGraph
from bench.report import RESULTS, machine, snapshot
from bench.stage import Stage
from devtools.localstack import PostgresServer, free_port
from services.aggregator.progress import leaderboard, progress_of
from tiendo.board import days
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.board.figures import judge
from tiendo.board.movement import week_before
from tiendo.database import Connection, create_pool, spare_connection
from tiendo.lifespan import collect_for_serving

Read = Callable[[Connection], Awaitable[object]]
CLIENTS = 50
PROVINCE, DISTRICT, COMMUNE = "P07", "P07D03", "X00007"
# The leaderboard measured (and its floor): every commune, by one indicator.
BOARD_INDICATOR, COMMUNES = "cccd_collected", 4


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `samples`, in milliseconds."""
    ordered = sorted(samples)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def summary(samples: list[float]) -> dict[str, Any]:
    return {
        "n": len(samples),
        "p50_ms": percentile(samples, 0.5),
        "p99_ms": percentile(samples, 0.99),
    }


async def _children(conn: Connection, unit: str) -> list[str]:
    rows = await conn.fetch("SELECT code FROM units WHERE parent_code = $1 ORDER BY code", unit)
    return [r["code"] for r in rows]


async def reads(
    conn: Connection, campaign: Campaign, pool: asyncpg.Pool | None = None
) -> dict[str, Read]:
    """Every read measured, by name; each takes a connection and reads what a board does
    (the leaderboard, as the API does, with a second connection of `pool` when one is free)."""
    children = {u: await _children(conn, u) for u in ("VN", PROVINCE, DISTRICT, COMMUNE)}
    # The past read is noon of the campaign's day three days ago, not "three days ago":
    # `as_of` reads the shorter part of its moment's day of events, before the moment or
    # after it, so its cost follows the hour (the country's at 10 M events: a tenth of a
    # second at 23:00 or 01:00, a quarter at noon), and a run's figure depended on when it
    # ran. Noon is the worst hour, half a day of events either side.
    zone = ZoneInfo(campaign.timezone)
    day = (datetime.now(zone) - timedelta(days=3)).date()
    past = datetime.combine(day, time_of_day(12), zone).astimezone(UTC)

    def progress(unit: str, live: bool) -> Read:
        async def read(c: Connection) -> object:
            at = datetime.now(UTC) if live else past
            return await progress_of(c, campaign, unit, children[unit], at, live=live)

        return read

    def leaderboard_live(rows: slice) -> Read:
        async def read(c: Connection) -> object:
            now = datetime.now(UTC)
            async with spare_connection(pool) as beside:
                board_ = await leaderboard(
                    c,
                    campaign,
                    BOARD_INDICATOR,
                    COMMUNES,
                    now,
                    live=True,
                    previous_at=week_before(campaign, now),
                    settle=False,
                    beside=beside,
                )
            await board_.settle(c, rows)
            return board_[rows]

        return read

    async def drill_down(c: Connection) -> object:
        now = datetime.now(UTC)
        figures = [
            await judge(c, campaign, i, [PROVINCE, *children[PROVINCE]], now, live=True)
            for i in campaign.indicators
        ]
        bars = await days.daily_bars(
            c, campaign, PROVINCE, days.local_day(campaign, campaign.starts_at)
        )
        return figures, bars

    async def bare(c: Connection) -> object:
        return await c.fetchval(
            "SELECT value FROM progress WHERE campaign_id = $1 AND unit = $2 AND indicator = $3",
            campaign.id,
            COMMUNE,
            "cccd_collected",
        )

    # The floors of the two reads with a goal above a few milliseconds: what the database
    # must at least pass over for each, the columns it reads summed where they lie, nothing
    # joined, grouped or sent. At noon `as_of` reads the half day after the moment (the
    # shorter part; at exactly noon, after it) from `events_counted_by_day`, index only;
    # the leaderboard reads the level's counters and its indicator's day rollups from the
    # day a week ago on, their `change` from the heap (a count alone is index only).
    day_end = datetime.combine(day + timedelta(days=1), time_of_day(0), zone).astimezone(UTC)

    async def bare_day(c: Connection) -> object:
        return await c.fetchrow(
            "SELECT count(*), sum(value) FROM events WHERE indicator = ANY ($1::text[])"
            " AND counted"
            " AND occurred_at > $2 AND occurred_at < $3",
            list(campaign.indicators),
            past,
            day_end,
        )

    async def bare_board(c: Connection) -> object:
        week_ago = days.local_day(campaign, datetime.now(UTC) - timedelta(days=7))
        return await c.fetchrow(
            "SELECT (SELECT sum(p.value) FROM progress p JOIN units u ON u.code = p.unit"
            "        WHERE p.campaign_id = $1 AND p.indicator = $2 AND u.level = $3),"
            "       (SELECT sum(change) FROM subtree_days"
            "        WHERE campaign_id = $1 AND indicator = $2 AND day >= $4)",
            campaign.id,
            BOARD_INDICATOR,
            COMMUNES,
            week_ago,
        )

    return {
        "ceiling_bare_pk_read": bare,
        "ceiling_bare_half_day_of_events": bare_day,
        "ceiling_bare_leaderboard_rows": bare_board,
        "live_country": progress("VN", True),
        "live_province": progress(PROVINCE, True),
        "live_district": progress(DISTRICT, True),
        "live_commune": progress(COMMUNE, True),
        "leaderboard_communes_live": leaderboard_live(slice(0, 100)),  # the API's default page
        "leaderboard_communes_export": leaderboard_live(slice(None)),
        "drill_down_province": drill_down,
        "as_of_commune": progress(COMMUNE, False),
        "as_of_district": progress(DISTRICT, False),
        "as_of_province": progress(PROVINCE, False),
        "as_of_country": progress("VN", False),
    }


# Under load: each client is one board viewer refreshing a live board of twelve reads
# every REFRESH seconds (Grafana's refresh), its reads spread evenly over the period. The
# reads of the past and the leaderboard are not on it (a look at the past is a briefing's,
# not every viewer's every ten seconds; 50 viewers with one each would need more than this
# box's two cores, measured: they saturated it); a probe in its own process sends every
# read in turn meanwhile, one every half second, so each is also measured under the load.
# `as_of_country` is left out (a tenth of a second of a core each, a briefing's read).
BOARD = [
    "ceiling_bare_pk_read",
    "live_country",
    "live_province",
    "live_province",
    "live_district",
    "live_district",
    "live_commune",
    "live_commune",
    "live_commune",
    "live_commune",
    "drill_down_province",
    "drill_down_province",
]
PROBED = [
    "live_country",
    "live_province",
    "live_district",
    "live_commune",
    "drill_down_province",
    "leaderboard_communes_live",
    "as_of_commune",
    "as_of_district",
    "as_of_province",
]
REFRESH = 10.0


def board_of(client: int) -> list[str]:
    reads = BOARD[:]
    random.Random(client).shuffle(reads)
    return reads


async def under_load(
    dsn: str, pool: asyncpg.Pool, named: dict[str, Read], seconds: float, clients: int
) -> dict[str, Any]:
    """The viewers' reads (latency from the moment a viewer's schedule said to send it,
    not from when it was sent: a late read counts its wait, no coordinated omission), and
    the probe's reads of every kind meanwhile (`bench.read_probe`, its own process)."""
    viewed: dict[str, list[float]] = {}
    interval = REFRESH / len(BOARD)
    begin = time.perf_counter()
    end = begin + seconds

    async def viewer(k: int) -> None:
        reads = board_of(k)
        # viewers' schedules interleave rather than all firing at once
        due = begin + interval * k / clients
        i = 0
        while due < end:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            name = reads[i % len(reads)]
            async with pool.acquire() as conn:
                await named[name](conn)
            viewed.setdefault(name, []).append(time.perf_counter() - due)
            i += 1
            due += interval

    probe = asyncio.create_task(
        asyncio.to_thread(child, "bench.read_probe", "--dsn", dsn, "--seconds", str(seconds))
    )
    await asyncio.gather(*(viewer(k) for k in range(clients)))
    elapsed = time.perf_counter() - begin
    done = sum(len(s) for s in viewed.values())
    return {
        "offered_reads_per_second": round(clients / interval, 1),
        "achieved_reads_per_second": round(done / elapsed, 1),
        "viewers": {name: summary(s) for name, s in viewed.items()},
        "probe": await probe,
    }


async def alone(pool: asyncpg.Pool, named: dict[str, Read], rounds: int) -> dict[str, Any]:
    """Each read `rounds` times, one after the other: every round sends each read once, in
    an order of its own, so that a box whose speed drifts during the phase (this one's
    varied twofold within an hour) slows every read and its ceiling alike, not the reads
    that happened to come last."""
    # The export (0.85 s, no goal) is sampled in the first three rounds and every fifth
    # after. The goals' reads get every round: the p99 (nearest rank) of n < 100 samples
    # is their slowest, and the slowest of twenty is nearer a p99 than the slowest of the
    # four they had.
    slow = ("leaderboard_communes_export",)
    samples: dict[str, list[float]] = {name: [] for name in named}
    async with pool.acquire() as conn:
        for read in named.values():
            await read(conn)  # warm: plans cached, pages in memory
        for k in range(rounds):
            order = [n for n in named if n not in slow or k % 5 == 0 or k < 3]
            random.Random(k).shuffle(order)
            for name in order:
                t0 = time.perf_counter()
                await named[name](conn)
                samples[name].append(time.perf_counter() - t0)
    return {name: summary(s) for name, s in samples.items()}


async def explain_slowest(conn: Connection, read: Read) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of the slowest statement one run of `read` sends."""
    logged: list[asyncpg.connection.LoggedQuery] = []
    conn.add_query_logger(logged.append)
    try:
        await read(conn)
    finally:
        conn.remove_query_logger(logged.append)
    slowest = max(logged, key=lambda q: q.elapsed)
    async with conn.transaction():
        # planned under the read's own settings (its `SET LOCAL`s: as_of's hashing instead
        # of sorting, and no JIT), not the session's defaults
        for q in logged:
            if q.query.lstrip().upper().startswith("SET "):
                await conn.execute(q.query)
        plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {slowest.query}", *slowest.args)
    # a leaderboard's statements carry ten thousand unit codes: the plan keeps their start
    return {
        "statement_ms": round(1000 * slowest.elapsed, 1),
        "query": " ".join(slowest.query.split())[:600],
        "plan": [r[0][:300] for r in plan],
    }


async def profile_read(read: Read, conn: Connection, path: Path) -> dict[str, Any]:
    """A py-spy flame graph of this process running `read`, its waits for PostgreSQL
    included, again and again for at least 5 s, once if it takes longer (as_of of the
    country at 10 M events may take a minute; a read is in-process: py-spy samples the
    benchmark's own pid)."""
    flame = FlameGraph(path, os.getpid(), True, idle=True)
    await asyncio.sleep(0.5)  # py-spy attached
    runs, started = 0, time.perf_counter()
    while runs < 1 or time.perf_counter() - started < 5:
        await read(conn)
        runs += 1
    seconds = time.perf_counter() - started
    return {"flame_graph": flame.stop(), "runs": runs, "seconds": round(seconds, 1)}


STORAGE = """
SELECT t.name, sum(c.reltuples)::bigint AS rows, sum(pg_total_relation_size(c.oid))::bigint
       AS bytes
FROM unnest($1::text[]) AS t(name)
JOIN pg_class AS c
  ON (c.oid = to_regclass(t.name) AND c.relkind = 'r')
  OR c.oid IN (SELECT relid FROM pg_partition_tree(to_regclass(t.name)) WHERE isleaf)
GROUP BY t.name
"""
STORED = ("events", "subjects", "subtree_days", "progress")


async def storage(conn: Connection) -> dict[str, Any]:
    """Rows, bytes (heap, indexes and TOAST, every partition) and bytes per row of the
    tables that grow with the events or the keys, after the dataset's VACUUM ANALYZE."""
    rows = await conn.fetch(STORAGE, list(STORED))
    return {
        r["name"]: {
            "rows": r["rows"],
            "bytes": r["bytes"],
            "bytes_per_row": round(r["bytes"] / r["rows"]) if r["rows"] > 0 else None,
        }
        for r in rows
    }


def child(module: str, *args: str) -> dict[str, Any]:
    """`python -m <module> <args>` in its own process; the JSON of its last line."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, check=True, cwd=ROOT
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def writer(dsn: str, rate: int, seconds: float) -> dict[str, Any]:
    """`bench.steady_apply` in its own process; its JSON report."""
    return child("bench.steady_apply", "--dsn", dsn, "--rate", str(rate), "--seconds", str(seconds))


async def measure(
    dsn: str, n_events: int, rate: int, seconds: float, rounds: int, flame: Path
) -> dict[str, Any]:
    """Build the national dataset in `dsn`'s database and measure its reads; the slowest
    read's flame graph goes to `flame`."""
    builder = await asyncpg.connect(dsn)
    try:
        dataset = await national.build(builder, n_events)
    finally:
        await builder.close()
    pool = await create_pool(dsn, min_size=CLIENTS, max_size=CLIENTS + 2)
    try:
        # (opened after the migrations: its sessions have the database's search path)
        async with pool.acquire() as conn:
            campaign = await board.campaign(conn, national.CAMPAIGN)
            assert campaign is not None
            named = await reads(conn, campaign, pool)
            stored = await storage(conn)
        # this process serves the reads as the aggregator's API does, which sets its
        # garbage collector up for serving once started (`tiendo.lifespan.started`)
        collect_for_serving()
        results: dict[str, Any] = {
            "dataset": dataset,
            "storage": stored,
            "alone": await alone(pool, named, rounds),
        }
        slowest = max(
            (k for k in results["alone"] if not k.startswith("ceiling_")),
            key=lambda k: results["alone"][k]["p99_ms"],
        )
        async with pool.acquire() as conn:
            results["slowest"] = {
                "read": slowest,
                **await explain_slowest(conn, named[slowest]),
                **await profile_read(named[slowest], conn, flame),
            }
        # the writer alone first: its freshness with no reader is the ceiling of the loaded one
        results["writer_alone"] = await asyncio.to_thread(writer, dsn, rate, min(seconds, 10))
        load = asyncio.create_task(asyncio.to_thread(writer, dsn, rate, seconds))
        await asyncio.sleep(1)  # the writer has connected and started its ticks
        loaded = await under_load(dsn, pool, named, seconds - 1, CLIENTS)
        written = await load
        results["under_load"] = {
            "clients": CLIENTS,
            "seconds": seconds,
            **loaded,
            "writer": written,
        }
        results["freshness"] = {
            "offered_events_per_second": rate,
            "achieved_events_per_second": written["events_per_second"],
            "p50_seconds": written["freshness_p50_seconds"],
            "p99_seconds": written["freshness_p99_seconds"],
            "ceiling_p99_seconds_without_readers": results["writer_alone"]["freshness_p99_seconds"],
        }
        return results
    finally:
        await pool.close()


async def measure_reads(stage: Stage) -> None:
    """`make bench`'s read phase, in its own database on the run's PostgreSQL."""
    sizes = stage.sizes
    dsn = stage.pg.create_database("national")
    stage.results["reads"] = await measure(
        dsn,
        sizes.reads_events,
        sizes.reads_rate,
        sizes.reads_seconds,
        sizes.reads_rounds,
        stage.artifact("flame-read.svg"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reads", description=__doc__)
    parser.add_argument("--events", type=int)
    parser.add_argument("--quick", action="store_true", help="200,000 events, short load")
    parser.add_argument("--rate", type=int, help="events/s applied under the read load")
    parser.add_argument("--seconds", type=float, help="seconds of read load")
    parser.add_argument("--keep", action="store_true", help="keep the database's folder")
    args = parser.parse_args()
    n = args.events or (200_000 if args.quick else 10_000_000)
    rate = args.rate or (1000 if args.quick else 5000)
    seconds = args.seconds or (10 if args.quick else 60)
    folder = Path(tempfile.mkdtemp(prefix="tiendo-reads-"))
    pg = PostgresServer(folder / "pg", free_port())
    pg.start()
    before = snapshot()
    started = time.perf_counter()
    try:
        dsn = pg.create_database("national")
        results = asyncio.run(
            measure(
                dsn, n, rate, seconds, 5 if args.quick else 20, RESULTS / "reads-flame-read.svg"
            )
        )
    finally:
        pg.stop()
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    results["machine"] = machine(before, args.quick, time.perf_counter() - started)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reads.json").write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
