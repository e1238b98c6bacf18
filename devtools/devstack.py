"""`make dev`: prepare the local stack once, then run everything under honcho.

Preparation is idempotent (jars fetched once, PostgreSQL initialised once, Kafka storage
formatted once) and ends with `tiendo migrate`'s work, as the database owner, so that each
service can log in as its own role (deploy/dev.env); honcho then runs Kafka, PostgreSQL,
the three services, a webhook receiver and the demo traffic, and stops them all on Ctrl-C.

`--local DIR` (or TIENDO_DEV_LOCAL) puts the data somewhere else than `.local/`, and
`--free-ports` or `--port-offset N` moves every port: a second stack, or a test's, runs
beside the first. deploy/dev.env is written out with the ports changed (DIR/dev.env), and
deploy/Procfile.dev reads the folder and the servers' ports from TIENDO_DEV_* variables.
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

from devtools.localstack import KafkaBroker, PostgresServer, ensure_kafka_jars, free_port
from services.schema import migrate_database
from tiendo.logs import configure_logging

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"
DEV_ENV = ROOT / "deploy" / "dev.env"
PROCFILE = ROOT / "deploy" / "Procfile.dev"
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

  ingest       http://127.0.0.1:{ingest}/docs      POST /v1/events, /metrics
  aggregator   http://127.0.0.1:{aggregator}/docs      progress, units, /metrics
  notifier     http://127.0.0.1:{notifier}/docs      GET /v1/alerts, /metrics
  webhook      http://127.0.0.1:{webhook receiver}/alerts    alerts received by the demo chiefs

  Reads need a credential (docs/access.md); the demo writes an HQ reader's to
  {local}/demo-reader-token (an admin's and an auditor's beside it):
  READER="Authorization: Bearer $(cat {local}/demo-reader-token)"
  curl -s -H "$READER" http://127.0.0.1:{aggregator}/v1/campaigns/ml01-demo/progress/01
  curl -s -H "$READER" 'http://127.0.0.1:{notifier}/v1/alerts?state=firing' | python3 -m json.tool

  Metrics: /metrics of each service. Prometheus (Debian's package) scrapes all three with
    prometheus --config.file=deploy/prometheus/prometheus.yml --storage.tsdb.path=.local/prom
  Grafana: provision deploy/grafana/provisioning (datasources: Prometheus uid `prometheus`,
  PostgreSQL uid `postgres` = 127.0.0.1:{postgres}/tiendo, user tiendo) and the boards in
  deploy/grafana/dashboards/; docker compose up does all of it where Docker runs.
  Boards and metrics are described in docs/metrics.md.
"""


def _busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def choose_ports(*, offset: int = 0, free: bool = False) -> dict[str, int]:
    """The stack's ports: the defaults, shifted by `offset`, or any free ones."""
    return {name: free_port() if free else port + offset for name, port in PORTS.items()}


def prepare(local: Path, ports: dict[str, int]) -> None:
    busy = [f"{name} ({port})" for name, port in ports.items() if _busy(port)]
    if busy:
        raise SystemExit(
            "ports already in use: " + ", ".join(busy) + " — is another `make dev` running?"
        )
    started = time.monotonic()
    ensure_kafka_jars()
    KafkaBroker(local / "kafka", ports["kafka"], ports["kafka controller"]).prepare()
    pg = PostgresServer(local / "pg", ports["postgres"])
    pg.init()
    pg.start()
    try:
        asyncio.run(_create_database(pg.dsn()))
        # as `tiendo migrate` does: the services log in as roles that may not migrate
        configure_logging("INFO", json=False)
        asyncio.run(migrate_database(pg.dsn("tiendo")))
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


def dev_env(local: Path, ports: dict[str, int]) -> str:
    """deploy/dev.env with every default port replaced by the stack's, and the variables
    the Procfile reads (TIENDO_DEV_*)."""
    moved = {str(PORTS[name]): str(port) for name, port in ports.items()}
    lines = []
    for line in DEV_ENV.read_text().splitlines():
        key, sep, value = line.partition("=")
        if not sep or key.lstrip().startswith("#"):
            lines.append(line)
            continue
        value = moved.get(value, value)
        for old, new in moved.items():
            value = value.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
        lines.append(f"{key}={value}")
    lines += [
        "# the stack's folder and servers (python -m devtools.devstack)",
        f"TIENDO_DEV_LOCAL={local}",
        f"TIENDO_DEV_KAFKA_PORT={ports['kafka']}",
        f"TIENDO_DEV_KAFKA_CONTROLLER_PORT={ports['kafka controller']}",
        f"TIENDO_DEV_POSTGRES_PORT={ports['postgres']}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.devstack", description=__doc__)
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument(
        "--local",
        type=Path,
        default=Path(os.environ.get("TIENDO_DEV_LOCAL", LOCAL)),
        help="folder of the stack's data (default: .local/ of the checkout)",
    )
    ports = parser.add_mutually_exclusive_group()
    ports.add_argument("--port-offset", type=int, default=0, help="add N to every port")
    ports.add_argument("--free-ports", action="store_true", help="any free ports")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    local: Path = args.local.resolve()
    chosen = choose_ports(offset=args.port_offset, free=args.free_ports)
    prepare(local, chosen)
    if args.prepare_only:
        return
    env_file = local / "dev.env"
    env_file.write_text(dev_env(local, chosen))
    print(BANNER.format(**chosen, local=local), flush=True)  # noqa: T201
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    honcho = shutil.which("honcho", path=bin_dir) or "honcho"
    os.execv(  # noqa: S606 - a fixed command line; honcho replaces this process
        honcho,
        [honcho, "-f", str(PROCFILE), "-e", str(env_file), "-d", str(ROOT), "start"],
    )


if __name__ == "__main__":
    main()
