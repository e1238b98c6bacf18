"""Ingest as several processes on one port (TIENDO_INGEST_WORKERS, SO_REUSEPORT) keeps one
rate limit per token: its bucket is a row in PostgreSQL, so however requests spread over
the processes, a token is let in for exactly its burst, and the rest get 429 with
Retry-After. A worker that dies takes the service down whole; SIGTERM stops them all."""

import asyncio
import re
import signal
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import psutil
import pytest

from devtools.localstack import KafkaBroker
from tests.ingest.test_ingest_api import NOW, batch, event, serving, settings_for
from tests.support.stack import ServiceProcess, Topics, eventually, ingest_process
from tests.support.world import build_world, issue_token

WORKERS = 3
LIMIT = 24
SENT = 72
# The burst is the limit; the rate refills one event per 1,000 s, so nothing is refilled
# during a test however slow the machine: the admitted count cannot depend on timing.
TIGHT = {"rate_limit_events_per_second": 0.001, "rate_limit_burst_events": LIMIT}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


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
