"""Ingest's Prometheus metrics, one registry per app so tests can build many apps."""

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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
            "Events refused, by reason",
            ["reason"],
            registry=r,
        )
        self.requests = Counter(
            "tiendo_ingest_requests_total",
            "Event requests by HTTP status",
            ["status"],
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
        self.kafka_ready = Gauge(
            "tiendo_ingest_kafka_ready",
            "1 while the Kafka producer is connected",
            registry=r,
        )
