"""Graceful shutdown: on SIGTERM ingest (a real `tiendo ingest serve` process) stops
accepting connections, finishes the requests in flight — one of them still sending its
body when the signal arrives — flushes the producer and exits; every event it answered
202 is in Kafka, and it never answers 202 for one that is not."""

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from devtools.localstack import KafkaBroker, free_port
from tests.ingest.test_ingest_api import NOW, batch, read_topic
from tests.support.stack import ServiceProcess, Topics, eventually, service_env
from tests.support.world import build_world, issue_token
from tiendo.event import decode


@pytest.fixture
async def ingest_process(
    database: str, kafka: KafkaBroker, topics: Topics, tmp_path: Path
) -> AsyncIterator[tuple[ServiceProcess, httpx.AsyncClient]]:
    await build_world(database, starts_at=NOW)
    token = await issue_token(database)
    port = free_port()
    process = ServiceProcess(
        "ingest",
        {
            **service_env(
                "TIENDO_INGEST_",
                database_url=database,
                kafka_bootstrap=kafka.bootstrap,
                port=port,
                environment="test",
            ),
            **topics.env("TIENDO_INGEST_"),
        },
        tmp_path / "ingest.log",
    )
    process.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60.0,
        ) as client:

            async def ready() -> None:
                try:
                    r = await client.get("/readyz")
                except httpx.TransportError as exc:
                    raise AssertionError(str(exc)) from exc
                assert r.status_code == 200

            await eventually(ready, timeout=120)
            yield process, client
    finally:
        process.stop()


async def in_flight(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    line = next(x for x in text.splitlines() if x.startswith("tiendo_ingest_requests_in_flight "))
    return float(line.split()[1])


async def test_sigterm_finishes_requests_in_flight_and_never_acks_what_kafka_lacks(
    ingest_process: tuple[ServiceProcess, httpx.AsyncClient], kafka: KafkaBroker, topics: Topics
) -> None:
    process, client = ingest_process
    acknowledged: set[str] = set()
    refused = 0

    async def load(number: int) -> None:
        nonlocal refused
        for b in range(10_000):
            body = batch(100, f"load{number}-{b}-")
            try:
                r = await client.post("/v1/events", json=body)
            except httpx.TransportError:
                refused += 1
                return  # the server is gone or going: stop, as a client would (and retry)
            if r.status_code == 202:
                acknowledged.update(str(e["event_id"]) for e in body["events"])
            else:
                refused += 1

    # A request whose body is half sent when the signal arrives.
    slow_body = orjson.dumps(batch(500, "slow-"))
    half = len(slow_body) // 2
    rest_may_go = asyncio.Event()

    async def slowly() -> AsyncIterator[bytes]:
        yield slow_body[:half]
        await rest_may_go.wait()
        yield slow_body[half:]

    slow = asyncio.create_task(
        client.post("/v1/events", content=slowly(), headers={"Content-Type": "application/json"})
    )
    loaders = [asyncio.create_task(load(n)) for n in range(3)]
    try:

        async def under_way() -> None:
            assert len(acknowledged) >= 1000
            assert await in_flight(client) >= 1  # the slow request is inside the handler

        await eventually(under_way, timeout=120)
        assert process.process is not None
        process.process.terminate()  # SIGTERM

        async def not_accepting() -> None:
            async with httpx.AsyncClient(timeout=5.0) as fresh:
                try:
                    await fresh.get(str(client.base_url.join("/healthz")))
                except httpx.TransportError:
                    return
            raise AssertionError("a new connection is still accepted")

        await eventually(not_accepting, timeout=60)
        rest_may_go.set()
        slow_response = await asyncio.wait_for(slow, timeout=60)
        await asyncio.wait_for(asyncio.gather(*loaders), timeout=120)
        code = await asyncio.to_thread(process.process.wait, 60)
        # uvicorn re-raises the signal once it has shut down cleanly
        assert code in (0, -signal.SIGTERM)
        log = process.log.read_text()
        assert "ingest_stopped" in log
    finally:
        rest_may_go.set()
        for task in [slow, *loaders]:
            task.cancel()
        await asyncio.gather(slow, *loaders, return_exceptions=True)

    assert slow_response.status_code == 202, slow_response.text
    acknowledged.update(f"slow-{i}" for i in range(500))
    records = await read_topic(kafka.bootstrap, topics.events, at_least=len(acknowledged))
    in_topic = {decode(r.value).event_id for r in records}
    assert acknowledged <= in_topic
