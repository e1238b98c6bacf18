"""A service waits for PostgreSQL and Kafka with one info line, and when one does not come
within TIENDO_<SERVICE>_DEPENDENCY_TIMEOUT_SECONDS it stops with one clear error line and
no traceback; ingest, which answers 503 while Kafka is away, says so once and goes on.
Real `tiendo … serve` processes against real servers, or ports nothing listens on."""

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from devtools.localstack import KafkaBroker, free_port
from tests.support.stack import eventually

_LEVEL = re.compile(r"\[(debug|info|warning|error|critical)\s*\]")


def _run(service: str, settings: dict[str, str]) -> "subprocess.Popen[str]":
    prefix = f"TIENDO_{service.upper()}_"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIENDO_")}
    env |= {prefix + key.upper(): value for key, value in settings.items()}
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", service, "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _lines_at(output: str, level: str) -> list[str]:
    return [line for line in output.splitlines() if (m := _LEVEL.search(line)) and m[1] == level]


async def _status(client: httpx.AsyncClient, path: str) -> int | None:
    """The status of GET `path`; None while the server does not listen yet."""
    try:
        return (await client.get(path)).status_code
    except httpx.TransportError:
        return None


async def _finish(process: "subprocess.Popen[str]", timeout: float) -> tuple[int, str]:
    output, _ = await asyncio.to_thread(process.communicate, timeout=timeout)
    return process.returncode, output


async def test_a_service_without_postgres_stops_after_the_timeout_with_one_clear_error() -> None:
    port = free_port()  # nothing listens there
    process = _run(
        "aggregator",
        {
            "database_url": f"postgresql://tiendo@127.0.0.1:{port}/tiendo",
            "port": str(free_port()),
            "dependency_timeout_seconds": "2",
        },
    )
    code, output = await _finish(process, timeout=60)
    assert code == 1, output
    assert "Traceback" not in output
    [waiting] = [line for line in _lines_at(output, "info") if "waiting_for_" in line]
    assert "waiting_for_postgresql" in waiting
    assert f"127.0.0.1:{port}" in waiting
    [error] = _lines_at(output, "error")
    assert "startup_failed" in error
    assert f"PostgreSQL at 127.0.0.1:{port} did not answer within 2 s" in error
    assert _lines_at(output, "warning") == []


async def test_a_consumer_without_kafka_stops_after_the_timeout_with_one_clear_error(
    database: str,
) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    process = _run(
        "notifier",
        {
            "database_url": database,
            "kafka_bootstrap": bootstrap,
            "port": str(free_port()),
            "dependency_timeout_seconds": "2",
            # outside the explicit dev mode the default secret stops it before anything
            "webhook_secret": "test-webhook-secret",
        },
    )
    code, output = await _finish(process, timeout=60)
    assert code == 1, output
    assert "Traceback" not in output
    assert [line for line in _lines_at(output, "info") if "waiting_for_" in line] == [
        line for line in _lines_at(output, "info") if "waiting_for_kafka" in line
    ]
    [error] = _lines_at(output, "error")
    assert f"Kafka at {bootstrap} did not answer within 2 s" in error
    assert _lines_at(output, "warning") == []


async def test_ingest_keeps_serving_503_and_says_once_that_kafka_is_late(
    database: str, tmp_path: Path
) -> None:
    # a broker of this test's own, started late: the port is chosen before it listens
    broker = KafkaBroker(tmp_path / "kafka", free_port(), free_port(), heap="512m")
    port = free_port()
    process = _run(
        "ingest",
        {
            "database_url": database,
            "kafka_bootstrap": broker.bootstrap,
            "port": str(port),
            "dependency_timeout_seconds": "1",
        },
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def not_ready() -> None:
                assert await _status(client, "/readyz") == 503

            await eventually(not_ready)
            await asyncio.sleep(2)  # past the timeout: still serving
            assert (await client.get("/healthz")).status_code == 200
            await asyncio.to_thread(broker.start)

            async def ready() -> None:
                assert await _status(client, "/readyz") == 200

            await eventually(ready)
    finally:
        process.send_signal(signal.SIGTERM)
        _, output = await _finish(process, timeout=60)
        await asyncio.to_thread(broker.stop)
    assert "Traceback" not in output
    [error] = _lines_at(output, "error")
    assert "dependency_unavailable" in error
    assert f"Kafka at {broker.bootstrap} did not answer within 1 s" in error
    assert len([line for line in output.splitlines() if "waiting_for_kafka" in line]) == 1
