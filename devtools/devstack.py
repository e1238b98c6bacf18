"""`make dev`: prepare the local stack once, then run everything under honcho.

Preparation is idempotent (jars fetched once, PostgreSQL initialised once, Kafka storage
formatted once); honcho then runs Kafka, PostgreSQL, the three services, a webhook receiver
and the demo traffic, and stops them all on Ctrl-C.
"""

import argparse
import asyncio
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import asyncpg

from devtools.localstack import KafkaBroker, PostgresServer, ensure_kafka_jars

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"
PORTS = {
    "kafka": 9092,
    "kafka controller": 9093,
    "postgres": 5433,
    "ingest": 8001,
    "aggregator": 8002,
    "notifier": 8003,
    "webhook receiver": 8009,
}

BANNER = """
tiendo is starting (Ctrl-C stops everything). Within a minute:

  ingest       http://127.0.0.1:8001/docs      POST /v1/events, /metrics
  aggregator   http://127.0.0.1:8002/docs      progress, units, /metrics
  notifier     http://127.0.0.1:8003/docs      GET /v1/alerts, /metrics
  webhook      http://127.0.0.1:8009/alerts    alerts received by the demo chiefs

  curl -s http://127.0.0.1:8002/v1/campaigns/ml01-demo/progress/01 | python3 -m json.tool
  curl -s 'http://127.0.0.1:8003/v1/alerts?state=firing' | python3 -m json.tool

  Metrics: /metrics of each service. Prometheus (Debian's package) scrapes all three with
    prometheus --config.file=deploy/prometheus/prometheus.yml --storage.tsdb.path=.local/prom
  Grafana: provision deploy/grafana/provisioning (datasources: Prometheus uid `prometheus`,
  PostgreSQL uid `postgres` = 127.0.0.1:5433/tiendo, user tiendo) and the boards in
  deploy/grafana/dashboards/; docker compose up does all of it where Docker runs.
  Boards and metrics are described in docs/metrics.md.
"""


def _busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def prepare() -> None:
    busy = [f"{name} ({port})" for name, port in PORTS.items() if _busy(port)]
    if busy:
        raise SystemExit(
            "ports already in use: " + ", ".join(busy) + " — is another `make dev` running?"
        )
    started = time.monotonic()
    ensure_kafka_jars()
    KafkaBroker(LOCAL / "kafka", PORTS["kafka"], PORTS["kafka controller"]).prepare()
    pg = PostgresServer(LOCAL / "pg", PORTS["postgres"])
    pg.init()
    pg.start()
    try:
        asyncio.run(_create_database(pg.dsn()))
    finally:
        pg.stop()
    print(f"local stack prepared in {time.monotonic() - started:.1f} s")  # noqa: T201


async def _create_database(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = 'tiendo'"):
            await conn.execute("CREATE DATABASE tiendo")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.devstack", description=__doc__)
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    os.chdir(ROOT)
    prepare()
    if args.prepare_only:
        return
    print(BANNER)  # noqa: T201
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    honcho = shutil.which("honcho", path=bin_dir) or "honcho"
    os.execv(  # noqa: S606 - a fixed command line; honcho replaces this process
        honcho,
        [honcho, "-f", "deploy/Procfile.dev", "-e", "deploy/dev.env", "-d", str(ROOT), "start"],
    )


if __name__ == "__main__":
    main()
