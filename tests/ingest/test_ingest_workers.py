"""Ingest as several processes on one port (TIENDO_INGEST_WORKERS, SO_REUSEPORT) keeps one
rate limit per token: its bucket is a row in PostgreSQL, so however requests spread over
the processes, a token is let in for exactly its burst, and the rest get 429 with
Retry-After. A worker that dies takes the service down whole; SIGTERM stops them all.
/metrics sums every worker's counters, whichever worker takes the scrape."""

import asyncio
import os
import re
import signal
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.localstack import KafkaBroker
from tests.ingest.test_ingest_api import NOW, batch, event, serving, settings_for
from tests.support.stack import ServiceProcess, Topics, eventually, ingest_process
from tests.support.world import build_world, issue_token
from tiendo.metrics import MULTIPROC_DIR_ENV

WORKERS = 3
LIMIT = 24
SENT = 72
# The burst is the limit; the rate refills one event per 1,000 s, so nothing is refilled
# during a test however slow the machine: the admitted count cannot depend on timing.
TIGHT = {"rate_limit_events_per_second": 0.001, "rate_limit_burst_events": LIMIT}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def served_by(process: ServiceProcess, path: str) -> list[str]:
    """The worker of each request to `path` the service has logged, in order."""
    log = _ANSI.sub("", process.log.read_text(errors="replace"))
    return re.findall(rf"request_handled .*path={re.escape(path)} .*worker=(\d+)", log)


def workers_of(process: ServiceProcess) -> list[psutil.Process]:
    # the spawned workers, not multiprocessing's resource tracker
    return [
        p
        for p in psutil.Process(process.pid).children()
        if any("spawn_main" in part for part in p.cmdline())
    ]


async def until_every_worker_serves(process: ServiceProcess) -> None:
    # a new connection for each request, so the kernel picks a worker for each
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=process.url, limits=limits, timeout=10) as client:

        async def ready() -> None:
            assert process.alive, f"ingest exited: see {process.log}"
            assert process.log.read_text(errors="replace").count("ingest_started") == WORKERS
            for _ in range(4 * WORKERS):
                try:
                    r = await client.get("/readyz")
                except httpx.TransportError as exc:
                    raise AssertionError(repr(exc)) from exc
                assert r.status_code == 200, r.text

        await eventually(ready, timeout=120)


@pytest.fixture
async def workers(
    database: str, kafka: KafkaBroker, topics: Topics, tmp_path: Path
) -> AsyncIterator[tuple[ServiceProcess, str]]:
    await build_world(database, starts_at=NOW - timedelta(days=1))
    token = await issue_token(database)
    process = ingest_process(
        database,
        kafka.bootstrap,
        topics,
        tmp_path / "ingest.log",
        workers=WORKERS,
        log_level="DEBUG",  # every request logged with the worker that served it
        **TIGHT,
    )
    process.start()
    try:
        await until_every_worker_serves(process)
        yield process, token
    finally:
        process.stop()


async def test_three_processes_sharing_a_token_admit_exactly_its_limit(
    workers: tuple[ServiceProcess, str],
) -> None:
    process, token = workers
    async with httpx.AsyncClient(
        base_url=process.url,
        headers={"Authorization": f"Bearer {token}"},
        limits=httpx.Limits(max_keepalive_connections=0),
        timeout=60,
    ) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/events", json=event(f"w{i}")) for i in range(SENT))
        )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {202: LIMIT, 429: SENT - LIMIT}, statuses
    for r in responses:
        if r.status_code == 429:
            assert r.headers["content-type"] == "application/problem+json"
            # the bucket is empty and refills an event per 1,000 s
            assert 900 <= int(r.headers["retry-after"]) <= 1000
            assert r.json()["status"] == 429
    # the requests really were spread over the processes
    log = _ANSI.sub("", process.log.read_text(errors="replace"))
    served = set(re.findall(r"request_handled .*path=/v1/events .*worker=(\d+)", log))
    assert len(served) >= 2, served

    assert process.process is not None
    process.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.process.wait, 60) == 0
    assert log.count("ingest_started") == WORKERS
    assert _ANSI.sub("", process.log.read_text()).count("ingest_stopped") == WORKERS


async def test_a_worker_that_dies_stops_the_service_whole(
    workers: tuple[ServiceProcess, str],
) -> None:
    process, _ = workers
    children = workers_of(process)
    assert len(children) == WORKERS
    children[1].kill()
    assert process.process is not None
    # exits with the code of the worker's end (killed by signal 9), not 0
    assert await asyncio.to_thread(process.process.wait, 90) == signal.SIGKILL
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == []
    assert "worker_exited" in process.log.read_text()


async def test_two_apps_share_the_bucket_and_its_debt(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    """Two in-process apps on one database, 10-event batches against a burst of 35: the
    bucket lets a batch in while it holds one event and charges all ten (35 → 25 → 15 → 5
    → −5), so exactly four batches are admitted whichever app takes them."""
    await build_world(database, starts_at=NOW - timedelta(days=1))
    token = await issue_token(database)
    settings = settings_for(
        database,
        kafka.bootstrap,
        topics,
        rate_limit_events_per_second=0.001,
        rate_limit_burst_events=35,
    )
    async with serving(settings, token) as one, serving(settings, token) as two:
        responses = await asyncio.gather(
            *(
                (one if i % 2 else two).post("/v1/events", json=batch(10, f"b{i}-"))
                for i in range(12)
            )
        )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {202: 4, 429: 8}, statuses


async def test_every_worker_scrapes_the_sum_of_all_workers_counters(
    workers: tuple[ServiceProcess, str],
) -> None:
    """Exactly the burst is sent (LIMIT events, one per connection, so the kernel spreads
    them): every one is accepted, and each scrape, on a new connection to whichever worker,
    counts all LIMIT, not the share of the worker that answered."""
    process, token = workers
    assert served_by(process, "/metrics") == []
    new_connections = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=process.url,
        headers={"Authorization": f"Bearer {token}"},
        limits=new_connections,
        timeout=60,
    ) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/events", json=event(f"m{i}")) for i in range(LIMIT))
        )
    assert Counter(r.status_code for r in responses) == {202: LIMIT}

    async def events_logged() -> None:
        assert len(served_by(process, "/v1/events")) == LIMIT

    await eventually(events_logged)
    # several workers accepted a share each: one worker's counter alone would fall short
    assert len(set(served_by(process, "/v1/events"))) >= 2

    scrapes = 4 * WORKERS
    async with httpx.AsyncClient(
        base_url=process.url, limits=new_connections, timeout=10
    ) as client:
        for _ in range(scrapes):
            r = await client.get("/metrics")
            assert r.status_code == 200
            families = list(text_string_to_metric_families(r.text))
            # the per-worker gauges are not exported a second time beside the sums
            names = [f.name for f in families]
            assert len(names) == len(set(names)), names
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for f in families
                for s in f.samples
            }
            accepted = sum(
                v
                for (name, _), v in samples.items()
                if name == "tiendo_ingest_events_accepted_total"
            )
            assert accepted == LIMIT, r.text
            assert samples["tiendo_ingest_requests_total", (("status", "202"),)] == LIMIT
            assert samples["tiendo_ingest_batch_events_count", ()] == LIMIT
            assert (
                samples["tiendo_ingest_events_rejected_total", (("reason", "rate_limited"),)] == 0
            )
            # only the scrape itself is being handled, and not as a POST /v1/events
            assert samples["tiendo_ingest_requests_in_flight", ()] == 0

    async def scrapes_logged() -> None:
        assert len(served_by(process, "/metrics")) == scrapes

    await eventually(scrapes_logged)
    # the same sum came from more than one worker
    assert len(set(served_by(process, "/metrics"))) >= 2

    # the workers' metric files live in a directory of this run, gone once it has stopped
    metrics_dir = {w.environ()[MULTIPROC_DIR_ENV] for w in workers_of(process)}
    assert len(metrics_dir) == 1
    (shared,) = metrics_dir
    assert os.path.isdir(shared)
    assert process.process is not None
    process.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.process.wait, 60) == 0
    assert not os.path.exists(shared)
