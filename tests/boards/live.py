"""The running parts of the board check: the services on real loopback ports, a webhook
receiver, and Debian's Prometheus pointed at them."""

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from fastapi import FastAPI, Request

from devtools.localstack import free_port, wait_for_port
from devtools.localstack.net import log_tail
from tests.support.stack import REPO

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


class Receiver:
    """A webhook endpoint for the notifier's deliveries."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received = 0
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> dict[str, bool]:
            await request.body()
            self.received += 1
            return {"ok": True}

        self.app = app


@contextlib.asynccontextmanager
async def serving(app: FastAPI, port: int) -> AsyncIterator[str]:
    """The app on a real loopback port (Prometheus must reach it), lifespan included."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "the server stopped during start-up"
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def prometheus_server(tmp: Path, targets: dict[str, int]) -> Iterator[str]:
    """Debian's Prometheus with deploy/prometheus/prometheus.yml, pointed at `targets`."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS_DIR / f) for f in config["rule_files"]]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == set(targets), "the scrape config's jobs are not the three services"
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    if PROMTOOL is not None:
        check = subprocess.run(
            [PROMTOOL, "check", "config", str(path)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    assert PROMETHEUS is not None
    with (tmp / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={path}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # (the first query came before it listened on a busy box: a connection refused,
        # which the callers' polling does not retry)
        try:
            wait_for_port(port, 60)
        except TimeoutError as exc:
            raise TimeoutError(f"prometheus: {exc}\n{log_tail(tmp / 'prometheus.log')}") from None
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def promtool_tests(tmp: Path, cases: list[dict[str, Any]]) -> None:
    """Prometheus's own rule engine (`promtool test rules`) over `cases` (each its
    `input_series` and `promql_expr_test`, as promtool reads them), with the repository's
    recording rules loaded: a query's exact answer on series written to expose it, which a
    live scrape of the services cannot feed (several replicas, a national tree)."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    path = tmp / "promtool-tests.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "rule_files": [
                    str(f) for pattern in config["rule_files"] for f in PROMETHEUS_DIR.glob(pattern)
                ],
                "evaluation_interval": "1m",
                "tests": cases,
            },
            allow_unicode=True,
        )
    )
    assert PROMTOOL is not None
    run = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


async def prom_query(client: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/query", params={"query": expr})
    # (before it is ready Prometheus answers 503 in plain text: an assertion, which the
    # callers' polling retries, not a JSON error)
    assert r.status_code == 200, f"{expr!r}: {r.text}"
    body = r.json()
    assert body["status"] == "success", f"{expr!r}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result
