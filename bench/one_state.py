"""What "one complete state" costs the notifier on a national tree (issue 11).

    python -m bench.one_state [--events 1000000] [--out bench/results/one_state.json]
                              [--no-republish] [--profile] [--statements]

A throw-away PostgreSQL and Kafka; a national tree of 11,000 units (country → 63
provinces → 700 districts → 10,236 communes), one campaign of 8 indicators with a target
on every commune (88,000 judged keys), events counted by the aggregator's own apply. Then:

- the mechanism tiendo uses, the notifier reading the board (`tiendo.board`) in PostgreSQL:
  a full pass (the periodic reconciliation), a feed-triggered pass over one batch's keys,
  and the time an admin change takes to reach the notifier's alerts;
- the alternative it replaced, a full republish of every key on the `unit-progress` feed,
  timed on the aggregator's side only (the notifier would still have to take it in).

CPU is this process's (the notifier's part) and PostgreSQL's (every backend's); each
evaluation also reports the wall seconds of its steps (`steps`). To find where a pass goes:
`--profile` writes a cProfile summary of each notifier pass, `--statements` the heaviest
statements of each (pg_stat_statements), both beside `--out`; `--no-republish` skips the
Kafka part."""

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.processes import tree_cpu_seconds
from devtools.localstack import KafkaBroker, PostgresServer, free_port
from services.aggregator import admin, feed
from services.aggregator.admin import CampaignIn, TargetIn, UnitIn
from services.aggregator.repository import apply as apply_sql
from services.notifier.evaluator import Evaluator
from services.notifier.render import Renderer
from services.notifier.settings import NotifierSettings
from services.notifier.summary import Summary
from services.schema import migrate_all
from tiendo.board import repository as board
from tiendo.counting import Key
from tiendo.database import Connection, create_pool
from tiendo.event import Event, Kind
from tiendo.kafka import TopicSpec, ensure_topics

INDICATORS = (
    "cccd_collected",
    "cccd_returned",
    "eid_collected",
    "eid_approved",
    "eid_activated_l1",
    "eid_activated_l2",
    "household_digitized",
    "pid_verified",
)
T = TypeVar("T")


class Probe:
    """Optional per-pass diagnostics: a cProfile summary and the heaviest statements."""

    def __init__(self, out: Path | None, profile: bool, statements: bool) -> None:
        self.out, self.profile, self.statements = out, profile, statements
        self.reports: list[str] = []

    async def run(self, name: str, pool: Any, call: Callable[[], Awaitable[T]]) -> T:
        if self.statements:
            async with pool.acquire() as conn:
                await conn.execute("SELECT pg_stat_statements_reset()")
        profiler = cProfile.Profile() if self.profile else None
        if profiler is not None:
            profiler.enable()
        try:
            return await call()
        finally:
            if profiler is not None:
                profiler.disable()
                text = io.StringIO()
                pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
                self.reports.append(f"=== {name}: cProfile (cumulative)\n{text.getvalue()}")
            if self.statements:
                async with pool.acquire() as conn:
                    rows = await conn.fetch(TOP_STATEMENTS)
                lines = [
                    f"{r['ms']:>10.0f} ms {r['calls']:>8} calls {r['rows']:>8} rows  {r['q']}"
                    for r in rows
                ]
                self.reports.append(f"=== {name}: statements\n" + "\n".join(lines) + "\n")

    def write(self) -> None:
        if self.out is not None and self.reports:
            self.out.write_text("\n".join(self.reports))


TOP_STATEMENTS = """
SELECT round(total_exec_time) AS ms, calls, rows,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS q
FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'
ORDER BY total_exec_time DESC LIMIT 12
"""


def pairs(units: list[str]) -> list[tuple[str, str]]:
    return [(u, i) for u in units for i in INDICATORS]


def national_tree() -> list[UnitIn]:
    units = [UnitIn(code="VN", name="Việt Nam", level=1)]
    rng = random.Random(11)
    districts: list[str] = []
    for p in range(63):
        units.append(UnitIn(code=f"P{p:02d}", name=f"Tỉnh {p}", level=2, parent_code="VN"))
        for d in range(700 // 63 + (p < 700 % 63)):
            code = f"P{p:02d}D{d:02d}"
            districts.append(code)
            units.append(UnitIn(code=code, name=f"Huyện {code}", level=3, parent_code=f"P{p:02d}"))
    communes = 10_236
    for i in range(communes):
        parent = districts[i % len(districts)] if i < len(districts) else rng.choice(districts)
        units.append(UnitIn(code=f"X{i:05d}", name=f"Xã {i}", level=4, parent_code=parent))
    return units


async def set_targets(conn: Connection, codes: Sequence[str], target: int) -> None:
    """Every indicator's target of the given units in the national campaign."""
    wanted = [TargetIn(unit=c, indicator=i, target=target) for c in codes for i in INDICATORS]
    await admin.upsert_targets(conn, "national", wanted, "bench")


async def timed(call: Callable[[], Awaitable[T]], pg_pid: int) -> tuple[T, dict[str, Any]]:
    pg0, cpu0, t0 = tree_cpu_seconds(pg_pid), time.process_time(), time.perf_counter()
    result = await call()
    return result, {
        "seconds": round(time.perf_counter() - t0, 3),
        "notifier_cpu_seconds": round(time.process_time() - cpu0, 3),
        "postgres_cpu_seconds": round(tree_cpu_seconds(pg_pid) - pg0, 3),
    }


def steps(summary: Summary) -> dict[str, float]:
    return {k: round(v, 3) for k, v in summary.seconds.items()}


async def main(n_events: int, republish: bool = True, probe: Probe | None = None) -> dict[str, Any]:
    probe = probe or Probe(None, False, False)
    with tempfile.TemporaryDirectory(prefix="tiendo-one-state-") as folder:
        settings = {"shared_preload_libraries": "pg_stat_statements"} if probe.statements else {}
        pg = PostgresServer(Path(folder) / "pg", free_port(), fast=True, settings=settings)
        kafka = KafkaBroker(Path(folder) / "kafka", free_port(), free_port()) if republish else None
        pg.start()
        if kafka is not None:
            kafka.start()
        try:
            results = await _measure(pg, kafka, n_events, probe)
        finally:
            if kafka is not None:
                kafka.stop()
            pg.stop()
    probe.write()
    return results


async def _measure(
    pg: PostgresServer, kafka: KafkaBroker | None, n_events: int, probe: Probe
) -> dict[str, Any]:
    dsn = pg.create_database("national")
    # migrated before the pool opens: the migrations set the database's search_path (the
    # services' schemas), which only connections opened after them take
    migrating = await asyncpg.connect(dsn)
    try:
        await migrate_all(migrating)
    finally:
        await migrating.close()
    pool = await create_pool(dsn, max_size=4)
    if probe.statements:
        async with pool.acquire() as conn:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    assert pg.process is not None
    pg_pid = pg.process.pid
    results: dict[str, Any] = {"at": datetime.now(UTC).isoformat(), "events": n_events}
    now = datetime.now(UTC)
    starts_at = now - timedelta(days=20)
    units = national_tree()
    communes = [u.code for u in units if u.level == 4]
    async with pool.acquire() as conn:
        async with conn.transaction():
            await admin.upsert_units(conn, units, "bench")
            await admin.upsert_campaign(
                conn,
                "national",
                CampaignIn(
                    name="national",
                    starts_at=starts_at,
                    deadline=starts_at + timedelta(days=50),
                    indicators=list(INDICATORS),
                ),
                "bench",
            )
            _, setup = await timed(lambda: set_targets(conn, communes, 1000), pg_pid)
        results["targets_upsert"] = setup
        rng = random.Random(2026)
        started = time.perf_counter()
        for offset in range(0, n_events, 20_000):
            batch = [
                Event(
                    event_id=f"e{k}",
                    unit=rng.choice(communes),
                    indicator=rng.choice(INDICATORS),
                    kind=Kind.INCREMENT,
                    value=rng.randint(1, 5),
                    occurred_at=starts_at + timedelta(seconds=rng.uniform(0, 20 * 86400)),
                )
                for k in range(offset, min(offset + 20_000, n_events))
            ]
            await apply_sql.apply_events(conn, batch)
        results["load_seconds"] = round(time.perf_counter() - started, 1)
        await conn.execute("VACUUM ANALYZE")
        results["judged_keys"] = await conn.fetchval(
            "SELECT count(*) FROM progress WHERE campaign_id = 'national' AND target > 0"
        )

    settings = NotifierSettings(database_url=dsn, bottom_rank_n=5, bottom_rank_level=4)
    evaluator = Evaluator(settings, Renderer(), ("webhook",))

    async def evaluate(name: str, at: datetime, keys: Any = None) -> tuple[Summary, dict[str, Any]]:
        summary, figures = await timed(
            lambda: probe.run(name, pool, lambda: evaluator.evaluate_at(pool, at, keys)), pg_pid
        )
        figures["steps"] = steps(summary)
        return summary, figures

    first: Summary
    first, results["full_pass_first"] = await evaluate("full_pass_first", now)
    results["full_pass_first"]["alert_changes"] = len(first.changes)
    steady = []
    for k in range(3):
        _, figures = await evaluate(f"full_pass_steady_{k}", now + timedelta(seconds=10 * (k + 1)))
        steady.append(figures)
    results["full_pass_steady"] = steady
    keys = [Key("national", rng.choice(communes), rng.choice(INDICATORS)) for _ in range(1000)]
    _, results["feed_pass_1000_keys"] = await evaluate(
        "feed_pass_1000_keys", now + timedelta(seconds=45), keys
    )
    # An admin change: one province's communes get targets ten times higher.
    province = [u.code for u in units if u.level == 4 and (u.parent_code or "").startswith("P07")]
    async with pool.acquire() as conn, conn.transaction():
        _, results["admin_change"] = await timed(
            lambda: set_targets(conn, province, 10_000), pg_pid
        )
    summary, results["full_pass_after_admin_change"] = await evaluate(
        "full_pass_after_admin_change", now + timedelta(seconds=50)
    )
    results["full_pass_after_admin_change"]["alert_changes"] = len(summary.changes)
    results["admin_change_reflected_seconds"] = round(
        settings.admin_watch_seconds + results["full_pass_after_admin_change"]["seconds"], 2
    )

    if kafka is None:
        await pool.close()
        return results
    # The alternative: republish every key on the feed (the aggregator's side of it).
    await ensure_topics(kafka.bootstrap, [TopicSpec("unit-progress", 3, compacted=True)])
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        async with pool.acquire() as conn:
            rows = await feed.load_all(conn)
            campaigns = await board.campaigns(conn)
        sent, results["full_republish"] = await timed(
            lambda: feed.publish(producer, "unit-progress", rows, campaigns, now), pg_pid
        )
        results["full_republish"]["messages"] = sent
    finally:
        await producer.stop()
    await pool.close()
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/one_state.json"))
    parser.add_argument(
        "--no-republish", action="store_true", help="skip the Kafka full-republish part"
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile each pass (<out>.profile.txt)"
    )
    parser.add_argument(
        "--statements",
        action="store_true",
        help="the heaviest statements of each pass, pg_stat_statements (<out>.profile.txt)",
    )
    args = parser.parse_args()
    report = args.out.with_suffix(".profile.txt")
    probe = Probe(report, args.profile, args.statements)
    results = asyncio.run(main(args.events, not args.no_republish, probe))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    cli()
