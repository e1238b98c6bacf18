"""Freshness at a fixed offered load: how long an accepted event takes to show in the
counters while the notifier judges the feed, and what the notifier costs meanwhile."""

import asyncio

from bench.exposition import histogram_buckets, histogram_quantile, metric_value, scrape
from bench.phases import AGGREGATOR
from bench.processes import loadgen
from bench.profiling import FlameGraph
from bench.stage import Stage
from devtools.localstack import free_port

FRESHNESS = "tiendo_aggregator_event_freshness_seconds"
BATCH_SECONDS = "tiendo_aggregator_batch_seconds"
CLOCK_PASSES = 'tiendo_notifier_evaluation_seconds_count{trigger="clock"}'
SNAPSHOT = "tiendo_aggregator_unit_snapshot_timestamp_seconds"


async def measure_freshness(stage: Stage) -> None:
    """Runs with ingest from the ingest phase; stops every service when done."""
    sizes = stage.sizes
    port = free_port()
    await stage.serve(AGGREGATOR, stage.aggregator_env(port), "aggregator-freshness", port)
    notifier_port = free_port()
    notifier = await stage.serve(
        ["services.cli", "notifier", "serve"],
        stage.env(
            "notifier",
            port=notifier_port,
            admin_token="bench-admin-token",
            # production refuses the shared webhook secret and needs the links' key
            link_secret="bench-link-secret-" + "0" * 32,
        ),
        "notifier",
        notifier_port,
    )
    # A probe batch applied end to end: the consumer has joined and been assigned, so
    # the measured load does not include the group's start-up.
    loadgen(stage.ingest_url, stage.token, 1000, 1, prefix="probe")
    stage.produced += 1000
    while await stage.applied() < stage.produced:
        await asyncio.sleep(0.1)
    # Steady state: the start-up's one-off work (the first metric snapshot, the notifier's
    # first evaluation) is done, and the probe's events, which waited for the consumer
    # group to form, are subtracted from the freshness histogram.
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    while not metric_value(await scrape(metrics_url), SNAPSHOT):
        await asyncio.sleep(0.2)
    # and the notifier has finished a full pass after taking in the republished feed
    # (a fresh campaign opens an alert for most units: a burst of writes, once)
    notifier_metrics = f"http://127.0.0.1:{notifier_port}/metrics"
    while (metric_value(await scrape(notifier_metrics), CLOCK_PASSES) or 0) < 2:
        await asyncio.sleep(0.5)
    before = await scrape(metrics_url)
    n = sizes.freshness_rate * sizes.freshness_seconds
    notifier_cpu0 = notifier.cpu_seconds()
    notifier_flame = FlameGraph(
        stage.artifact("flame-notifier.svg"), notifier.popen.pid, sizes.profile
    )
    offered = loadgen(
        stage.ingest_url,
        stage.token,
        n,
        sizes.concurrency,
        rate=sizes.freshness_rate,
        prefix="fr",
    )
    stage.produced += n
    while await stage.applied() < stage.produced:
        await asyncio.sleep(0.2)
    # the feed of the last batches reaches the notifier, and one evaluation tick runs
    await asyncio.sleep(5)
    notifier_flame_graph = notifier_flame.stop()
    notifier.sample()
    stage.results["notifier"] = {
        "events": n,
        "cpu_seconds_per_1000_events": round(
            (notifier.cpu_seconds() - notifier_cpu0) / n * 1000, 3
        ),
        "peak_rss_mb": round(notifier.peak_rss / 2**20),
        "flame_graph": notifier_flame_graph,
    }
    text = await scrape(metrics_url)

    def grew(name: str) -> float:
        return (metric_value(text, name) or 0) - (metric_value(before, name) or 0)

    seen, since = histogram_buckets(text, FRESHNESS), histogram_buckets(before, FRESHNESS)
    batches, in_tx = grew(f"{BATCH_SECONDS}_count"), grew(f"{BATCH_SECONDS}_sum")
    stage.results["freshness"] = {
        "offered_events_per_second": sizes.freshness_rate,
        "achieved_events_per_second": offered["events_per_second"],
        "events": n,
        "p50_seconds": round(histogram_quantile(seen, 0.5, since) or -1, 3),
        "p99_seconds": round(histogram_quantile(seen, 0.99, since) or -1, 3),
        "ingest_batch_p99_ms": offered["batch_p99_ms"],
        # how the aggregator took that load: transactions and their mean duration
        "apply_batches": batches,
        "apply_batch_mean_seconds": round(in_tx / (batches or 1), 3),
    }
    for service in stage.services:
        service.stop()
    stage.services.clear()
