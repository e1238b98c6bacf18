"""The benchmark's phases after the ceilings, in the order they run: ingest at saturation
and at a sustained rate, the aggregator's apply, then (bench.freshness) freshness under a
fixed load, then the rebuild of every counter and the pure alert evaluation."""

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import httpx

from bench import payloads
from bench.ceilings import bare_produce, keyed
from bench.exposition import metric_value, scrape
from bench.processes import Service, loadgen, tree_cpu_seconds
from bench.profiling import FlameGraph, sql_profile
from bench.stage import INGEST_SETTINGS, Stage
from devtools.localstack import free_port
from services.aggregator.rebuild import rebuild

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tiendo.board.campaign import Campaign
    from tiendo.board.repository import Counter
    from tiendo.counting import ValueAt

INGEST = ["services.cli", "ingest", "serve"]
AGGREGATOR = ["services.cli", "aggregator", "serve"]


async def measure_ingest(stage: Stage, workers: int = 1, suffix: str = "") -> Service:
    """Ingest of `workers` processes at saturation, then at the sustained rate, into
    results["ingest<suffix>"] and ["ingest_sustained<suffix>"]; returns the service, left
    up for the phases after (freshness)."""
    sizes, results = stage.sizes, stage.results
    # SO_REUSEPORT spreads connections, not requests: several per process
    concurrency = sizes.concurrency * workers
    port = free_port()
    env = stage.env("ingest", port=port, workers=workers, **INGEST_SETTINGS)
    ingest = await stage.serve(INGEST, env, f"ingest{suffix}", port)
    if workers > 1:
        await _every_worker_ready(f"http://127.0.0.1:{port}/readyz", workers)
    stage.ingest_url = f"http://127.0.0.1:{port}/v1/events"
    cpu0 = ingest.cpu_seconds()
    flame = FlameGraph(
        stage.artifact(f"flame-ingest{suffix}.svg"),
        ingest.popen.pid,
        sizes.profile,
        workers=workers > 1,
    )
    result = loadgen(
        stage.ingest_url,
        stage.token,
        sizes.events,
        concurrency,
        prefix=f"ing{suffix}",
        compress=sizes.ingest_gzip,
    )
    result["workers"] = workers
    result["concurrency"] = concurrency
    result["flame_graph"] = flame.stop()
    ingest.sample()
    result["cpu_seconds_per_1000_events"] = round(
        (ingest.cpu_seconds() - cpu0) / sizes.events * 1000, 3
    )
    result["peak_rss_mb"] = round(ingest.peak_rss / 2**20)
    result["ratio_to_bare_produce"] = round(
        result["events_per_second"] / results["ceiling_bare_produce"]["events_per_second"], 2
    )
    result["ratio_to_bare_produce_batched"] = round(
        result["events_per_second"] / results["ceiling_bare_produce_batched"]["events_per_second"],
        2,
    )
    results[f"ingest{suffix}"] = result
    # Latency at the sustained rate contract §9 asks for, not at saturation (where it is
    # queueing: four 1,000-event batches in flight wait for one another).
    sustained_n = sizes.ingest_rate * sizes.ingest_rate_seconds
    sustained = loadgen(
        stage.ingest_url,
        stage.token,
        sustained_n,
        concurrency,
        rate=sizes.ingest_rate,
        prefix=f"sus{suffix}",
        compress=sizes.ingest_gzip,
    )
    results[f"ingest_sustained{suffix}"] = {
        "offered_events_per_second": sizes.ingest_rate,
        "achieved_events_per_second": sustained["events_per_second"],
        "events": sustained_n,
        "batch": sustained["batch"],
        "batch_p50_ms": sustained["batch_p50_ms"],
        "batch_p99_ms": sustained["batch_p99_ms"],
        "workers": workers,
        "gzip": sizes.ingest_gzip,
        "body_bytes_per_batch": sustained["body_bytes_per_batch"],
        "concurrency": concurrency,
    }
    stage.produced += sizes.events + sustained_n
    return ingest


async def measure_scale_out(stage: Stage) -> None:
    """The same ingest and apply again with `ingest_workers` ingest processes behind one
    port and `apply_replicas` aggregator replicas sharing the apply: results["*_scaled"]."""
    sizes = stage.sizes
    ingest = await measure_ingest(stage, sizes.ingest_workers, suffix="_scaled")
    ingest.stop()
    stage.services.remove(ingest)
    await measure_apply(stage, sizes.apply_replicas, suffix="_scaled")


async def _every_worker_ready(url: str, workers: int, timeout: float = 60) -> None:
    """Until `url` answers 200 on many new connections in a row: /readyz answers for the
    worker the kernel gave the connection to, and the others may still be connecting to
    Kafka. (A worker not yet started has not bound the port, so it gets no requests.)"""
    deadline = time.monotonic() + timeout
    in_a_row = 0
    async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        while in_a_row < 5 * workers and time.monotonic() < deadline:
            in_a_row = in_a_row + 1 if (await client.get(url)).status_code == 200 else 0
            await asyncio.sleep(0.05)


async def _every_replica_applying(ports: list[int], timeout: float) -> None:
    """Until each replica's /metrics counts a committed batch, or `timeout` seconds."""
    deadline = time.monotonic() + timeout
    waiting = list(ports)
    while waiting and time.monotonic() < deadline:
        for p in list(waiting):
            try:
                text = await scrape(f"http://127.0.0.1:{p}/metrics")
            except httpx.TransportError:  # not listening yet
                continue
            if (metric_value(text, "tiendo_aggregator_batch_seconds_count") or 0) > 0:
                waiting.remove(p)
        await asyncio.sleep(0.05)


async def measure_apply(stage: Stage, replicas_n: int = 1, suffix: str = "") -> None:
    """The aggregator's replicas applying everything ingest produced since the last apply,
    from the first commit to the last, into results["aggregator_apply<suffix>"]. The
    one-replica apply is profiled (py-spy, not pausing the process: a few % of a core)."""
    sizes, pg, broker = stage.sizes, stage.pg, stage.broker
    base, produced = await stage.applied(), stage.produced
    ports = [free_port() for _ in range(replicas_n)]
    port = ports[0]
    replicas = [
        stage.spawn(AGGREGATOR, stage.aggregator_env(p), f"aggregator{suffix}-{i}")
        for i, p in enumerate(ports)
    ]
    await replicas[0].wait_ready(f"http://127.0.0.1:{port}/readyz")
    if sizes.profile:
        await stage.conn.execute("SELECT pg_stat_statements_reset()")
    flame = FlameGraph(
        stage.artifact(f"flame-aggregator{suffix}.svg"),
        replicas[0].popen.pid,
        replicas_n == 1 or sizes.profile,
    )
    cpu0 = sum(r.cpu_seconds() for r in replicas)
    assert pg.process is not None
    assert broker.process is not None
    pg_cpu0 = tree_cpu_seconds(pg.process.pid)
    broker_cpu0 = tree_cpu_seconds(broker.process.pid)
    # Steady state, from the first commit to the last: the consumer group's join (a few
    # seconds after readiness) is start-up, not apply work; the first batch is left out
    # of both the events and the time.
    while (first := await stage.applied()) == base:
        await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    if replicas_n > 1:
        # With several, so is the group's rebalance as each later replica joins: until
        # the last has joined, the first applies alone, and while partitions move none
        # applies. Timed from when every replica has committed a batch (one with no
        # partition never would: then after 60 s). Unless less than half the backlog is
        # left by then, too little to time: then from the first commit, rebalance and all.
        await _every_replica_applying(ports, timeout=60)
        every = await stage.applied()
        if 2 * (produced - every) >= produced - base:
            first, t0 = every, time.perf_counter()
    while await stage.applied() < produced:
        for r in replicas:
            r.sample()
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t0
    flame_graph = flame.stop()
    for r in replicas:
        r.sample()
    events = produced - base
    text = await scrape(f"http://127.0.0.1:{port}/metrics")
    in_tx = metric_value(text, "tiendo_aggregator_batch_seconds_sum")
    apply: dict[str, Any] = {
        "events": events,
        "events_timed": produced - first,
        "replicas": replicas_n,
        "seconds": round(elapsed, 2),
        "events_per_second": round((produced - first) / elapsed),
        # One connection's rate while in a transaction (with one replica): its parts'
        # transactions run side by side (`apply_connections`), and the metric sums their
        # seconds, so this is not the replica's rate, which `events_per_second` is.
        "events_per_second_per_connection": (
            round(events / in_tx) if in_tx and replicas_n == 1 else None
        ),
        "cpu_seconds_per_1000_events": round(
            (sum(r.cpu_seconds() for r in replicas) - cpu0) / events * 1000, 3
        ),
        "peak_rss_mb": round(max(r.peak_rss for r in replicas) / 2**20),
        # where the apply's work really is
        "postgres_cpu_seconds_per_1000_events": round(
            (tree_cpu_seconds(pg.process.pid) - pg_cpu0) / events * 1000, 3
        ),
        "broker_cpu_seconds_per_1000_events": round(
            (tree_cpu_seconds(broker.process.pid) - broker_cpu0) / events * 1000, 3
        ),
        "flame_graph": flame_graph,
    }
    if sizes.profile:
        apply["sql_profile"] = await sql_profile(
            stage.conn, stage.artifact(f"sql-aggregator{suffix}.txt")
        )
    apply["ratio_to_bare_consume"] = round(
        apply["events_per_second"] / stage.results["ceiling_bare_consume"]["events_per_second"],
        2,
    )
    stage.results[f"aggregator_apply{suffix}"] = apply
    for r in replicas:
        r.stop()
        stage.services.remove(r)


async def measure_rebuild(stage: Stage) -> None:
    """Every counter recomputed from the events topic, topped up to `rebuild_events`."""
    extra, chunk = stage.sizes.rebuild_events - stage.produced, 0
    # filled in chunks: ten million encoded events at once would need gigabytes
    while extra > 0:
        size = min(extra, 500_000)
        filler = payloads.events(
            size, starts_at=stage.campaign.starts_at, prefix=f"rb{chunk}-", seed_value=3 + chunk
        )
        await bare_produce(
            stage.broker.bootstrap, stage.settings.topic_events, keyed(filler), batched=True
        )
        extra, chunk = extra - size, chunk + 1
    report = await rebuild(stage.settings)
    stage.results["rebuild"] = {
        "events": report.events,
        "records": report.records,
        "seconds": round(report.seconds, 1),
        "events_per_second": round(report.events_per_second),
    }


def alert_evaluation(pairs: int) -> dict[str, Any]:
    """The notifier's rule conditions (stale, behind, at_risk) for `pairs` counters: the
    pure evaluation every clock tick runs (the board's figures of a campaign's counters,
    `judge_many` as a full pass judges them, then the rules), without the database round
    trips."""
    from services.notifier.rules import Rule, held
    from tiendo.board.campaign import Campaign
    from tiendo.board.figures import judge_many
    from tiendo.board.repository import Counter
    from tiendo.counting import ValueAt
    from tiendo.pace import Thresholds

    now = datetime.now(UTC)
    start = now - timedelta(days=20)
    campaign = Campaign(
        "c",
        "c",
        start,
        start + timedelta(days=50),
        "Asia/Ho_Chi_Minh",
        ("cccd_collected",),
        Thresholds(0.9, timedelta(hours=12)),
        (),
    )
    counters = [
        Counter(
            "c",
            f"u{i}",
            "",
            3,
            None,
            "cccd_collected",
            i % 900,
            0,
            1000,
            None,
            now - timedelta(hours=i % 24),
        )
        for i in range(pairs)
    ]
    values = {c.unit: ValueAt(c.value, c.last_event_at) for c in counters}
    ago = {c.unit: c.value - i % 50 for i, c in enumerate(counters)}
    started = time.perf_counter()
    holding = dict.fromkeys((Rule.STALE, Rule.BEHIND, Rule.AT_RISK), 0)
    for v in judge_many(campaign, counters, values, ago, now).values():
        for rule, holds in held(v, campaign, now).items():
            holding[rule] += holds
    elapsed = time.perf_counter() - started
    return {
        "pairs": pairs,
        "seconds": round(elapsed, 3),
        "holding": {str(k): v for k, v in holding.items()},
        "pass": _alert_pass(campaign, counters, values, ago, now),
    }


def _alert_pass(
    campaign: "Campaign",
    counters: "Sequence[Counter]",
    values: "Mapping[str, ValueAt]",
    ago: dict[str, int],
    now: datetime,
) -> dict[str, Any]:
    """The whole of a full pass's pure work on those counters, not only the rules: the
    board's figures, then which alerts change and which get fresh figures
    (`services.notifier.judging`), first with no alert open (every one that holds is
    opened), then steady, with those alerts open and this replica's memory of their
    figures warm (what every clock tick after the first does). The database's part (the
    reads, the writes of what changed) is not in it: `python -m bench.one_state` measures
    a whole pass on a national tree."""
    import asyncpg

    from services.notifier.inputs import Judged
    from services.notifier.judging import Written, judge_alerts
    from services.notifier.policy import effective
    from services.notifier.repository.alerts import AlertKey
    from services.notifier.settings import NotifierSettings
    from tiendo.board.figures import judge_many

    policy = effective(NotifierSettings(), {})
    policies, campaigns = {campaign.id: policy}, {campaign.id: campaign}
    rounds: dict[str, float] = {}
    written = Written()
    open_: dict[AlertKey, asyncpg.Record] = {}
    for name in ("first", "steady", "steady_again"):
        started = time.perf_counter()
        verdicts = judge_many(campaign, counters, values, ago, now)
        judged = [Judged(v, campaign) for v in verdicts.values()]
        judgement = judge_alerts(judged, campaigns, policies, policy, open_, {}, now, True, written)
        rounds[name] = time.perf_counter() - started
        if name == "first":
            # the alerts it opened, as the notifier stores them (firing for a day)
            since = now - timedelta(days=1)
            open_ = {
                AlertKey(t.key, t.rule.value): cast(
                    asyncpg.Record,
                    {
                        "id": i,
                        "version": 1,
                        "details": json.dumps(t.details),
                        "state": "firing",
                        "since": since,
                        "fired_at": since,
                        "resolved_at": None,
                    },
                )
                for i, t in enumerate(judgement.todo)
            }
    return {
        "open_alerts": len(open_),
        "first_seconds": round(rounds["first"], 3),
        # the first steady round also parses every alert's stored figures (once in a
        # replica's life); the next compares them as kept
        "steady_cold_seconds": round(rounds["steady"], 3),
        "steady_seconds": round(rounds["steady_again"], 3),
    }
