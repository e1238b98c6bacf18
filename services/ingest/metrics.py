"""Ingest's Prometheus metrics, one registry per app so tests can build many apps.

Labels take bounded values only: indicators (the catalogue), rejection reasons and HTTP
statuses (fixed sets here), token names (issued by an administrator, a handful).

With several workers (TIENDO_INGEST_WORKERS) /metrics serves `exposed`: every worker's
counters, histograms and gauges summed (tiendo.metrics). Each gauge therefore says how its
workers' values combine (`multiprocess_mode`, ignored by a process serving alone); the
gauges read from a function at scrape time cannot be combined and answer for the worker
that took the scrape, as /readyz does."""

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tiendo.metrics import ProcessGauge, exposition

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Every value of the `reason` label of tiendo_ingest_events_rejected_total.
REJECTION_REASONS = (
    "body_too_large",
    "unauthorized",
    "unsupported_media_type",
    "rate_limited",
    "malformed_json",
    "malformed_protobuf",
    "malformed_gzip",
    "invalid",
    "forbidden",
    "kafka_unavailable",
    "tokens_unavailable",
    "starting",
)


@dataclass
class IngestMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events_accepted = Counter(
            "tiendo_ingest_events_accepted_total",
            "Events acknowledged by Kafka and answered 202",
            ["indicator"],
            registry=r,
        )
        self.events_rejected = Counter(
            "tiendo_ingest_events_rejected_total",
            "Events refused, by reason (a request refused before its body is read counts 1)",
            ["reason"],
            registry=r,
        )
        for reason in REJECTION_REASONS:
            self.events_rejected.labels(reason)
        self.requests = Counter(
            "tiendo_ingest_requests_total",
            "Event requests by HTTP status",
            ["status"],
            registry=r,
        )
        self.rate_limited = Counter(
            "tiendo_ingest_rate_limited_requests_total",
            "Requests answered 429, by token",
            ["token"],
            registry=r,
        )
        self.rate_limit_alone = Counter(
            "tiendo_ingest_rate_limit_alone_total",
            "Times PostgreSQL did not answer the shared rate limit in time and this process "
            "decided alone (its share of the rate) for a few seconds",
            registry=r,
        )
        self.request_duration = Histogram(
            "tiendo_ingest_request_duration_seconds",
            "Time to answer POST /v1/events, Kafka acknowledgement included",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "tiendo_ingest_batch_events",
            "Events per accepted request",
            buckets=(1, 10, 50, 100, 250, 500, 1000),
            registry=r,
        )
        self.in_flight = Gauge(
            "tiendo_ingest_requests_in_flight",
            "POST /v1/events requests being handled",
            registry=r,
            # the service's load is the sum over workers; a dead worker handles nothing
            multiprocess_mode="livesum",
        )
        self.kafka_ready = ProcessGauge(
            "tiendo_ingest_kafka_ready",
            "1 while the Kafka producer is connected",
            registry=r,
        )
        self.producer_replacements = Counter(
            "tiendo_ingest_kafka_producer_replacements_total",
            "Producers retired after a failed publish and replaced by a fresh one",
            registry=r,
        )
        self.tokens_fresh = ProcessGauge(
            "tiendo_ingest_tokens_fresh",
            "1 while the token list is recent enough to trust (0: every request gets 503)",
            registry=r,
        )
        self.exposed = exposition(r, per_process=[self.kafka_ready, self.tokens_fresh])
