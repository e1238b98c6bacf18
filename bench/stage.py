"""What the benchmark's phases share: the sizes asked for, the throw-away servers, the seeded
database, the services running, and the figures so far."""

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench.processes import Service
from bench.report import artifact
from devtools.localstack import KafkaBroker, PostgresServer
from services.aggregator.admin import CampaignIn
from services.aggregator.settings import AggregatorSettings


@dataclass
class Sizes:
    events: int
    freshness_rate: int
    freshness_seconds: int
    rebuild_events: int
    alert_pairs: int
    concurrency: int
    ingest_rate: int = 20_000
    ingest_rate_seconds: int = 5
    # the scale-out phase: aggregator replicas sharing the apply and ingest's processes
    # (TIENDO_INGEST_WORKERS) behind one port, measured after the one-process figures
    apply_replicas: int = 2
    profile: bool = False
    ingest_workers: int = 3
    # whether the load generator gzips every body
    ingest_gzip: bool = False
    # a quick run's files are quick-*, so they never overwrite a full run's
    quick: bool = False
    # the read benchmark (bench.reads): its national dataset, write rate and read load
    reads_events: int = 200_000
    reads_rate: int = 1000
    reads_seconds: float = 10
    reads_rounds: int = 5


@dataclass
class Stage:
    sizes: Sizes
    logs: Path
    pg: PostgresServer
    broker: KafkaBroker
    dsn: str
    conn: asyncpg.Connection
    settings: AggregatorSettings
    token: str
    campaign: CampaignIn
    results: dict[str, Any] = field(default_factory=dict)
    # stopped by the runner if a phase fails
    services: list[Service] = field(default_factory=list)
    # events ingest has put on the events topic so far, all distinct and valid
    produced: int = 0
    # ingest's POST /v1/events, once the ingest phase has started it
    ingest_url: str = ""

    def artifact(self, name: str) -> Path:
        """bench/results/<name>, or quick-<name> for a quick run."""
        return artifact(name, self.sizes.quick)

    def aggregator_env(self, port: int) -> dict[str, str]:
        return self.env("aggregator", port=port, admin_token="bench-admin-token")

    def env(self, service: str, **values: object) -> dict[str, str]:
        """The environment of `tiendo <service> serve` on the benchmark's servers: production
        settings, warnings only, so logging costs what it costs in production."""
        settings = {
            "database_url": self.dsn,
            "kafka_bootstrap": self.broker.bootstrap,
            "log_level": "WARNING",
            "environment": "production",
            **values,
        }
        return {f"TIENDO_{service.upper()}_{k.upper()}": str(v) for k, v in settings.items()}

    def spawn(self, module: list[str], env: dict[str, str], log: str) -> Service:
        service = Service([sys.executable, "-m", *module], env, self.logs / f"{log}.log")
        self.services.append(service)
        return service

    async def serve(self, module: list[str], env: dict[str, str], log: str, port: int) -> Service:
        """A service started and ready on `port`."""
        service = self.spawn(module, env, log)
        await service.wait_ready(f"http://127.0.0.1:{port}/readyz")
        return service

    async def applied(self) -> int:
        """Records the aggregator has applied: its committed positions (every benchmark
        event is distinct and valid). A count(*) of events would scan the table the
        aggregator is filling and take server time from it."""
        total = await self.conn.fetchval(
            "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets"
            " WHERE group_id = $1 AND topic = $2",
            self.settings.group_id,
            self.settings.topic_events,
        )
        return int(total)


# The per-token rate limit is a policy, and kept from refusing anything; but it costs each
# request a PostgreSQL round trip (the bucket every process shares), and that cost is in.
INGEST_SETTINGS: dict[str, object] = {
    "rate_limit_events_per_second": 1e9,
    "rate_limit_burst_events": 10**9,
}
