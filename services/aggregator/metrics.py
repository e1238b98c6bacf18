"""Aggregator metrics. Per-unit figures come from a cached snapshot (refreshed in the
background), so a scrape never runs a query."""

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tiendo.pace import Status


@dataclass(frozen=True, slots=True)
class UnitFigures:
    campaign: str
    unit: str
    level: int
    indicator: str
    value: int
    target: int
    expected: float
    pct: float | None
    pace: float | None
    status: Status


class UnitCollector(Collector):
    """Exports the latest per-unit snapshot (units at or above the configured level)."""

    def __init__(self) -> None:
        self.snapshot: list[UnitFigures] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["campaign", "unit", "level", "indicator"]
        families = {
            "value": GaugeMetricFamily(
                "tiendo_unit_value", "Rolled-up count of the unit", labels=labels
            ),
            "target": GaugeMetricFamily("tiendo_unit_target", "Target of the unit", labels=labels),
            "expected": GaugeMetricFamily("tiendo_unit_expected", "Plan value now", labels=labels),
            "pct": GaugeMetricFamily("tiendo_unit_pct", "100 × value / target", labels=labels),
            "pace": GaugeMetricFamily("tiendo_unit_pace", "value / expected", labels=labels),
        }
        status = GaugeMetricFamily(
            "tiendo_unit_status", "1 for the unit's current status", labels=[*labels, "status"]
        )
        done = GaugeMetricFamily(
            "tiendo_units_done",
            "Units that reached their target, by level",
            labels=["campaign", "level", "indicator"],
        )
        done_counts: dict[tuple[str, str, str], int] = {}
        for f in self.snapshot:
            key = [f.campaign, f.unit, str(f.level), f.indicator]
            families["value"].add_metric(key, f.value)
            families["target"].add_metric(key, f.target)
            families["expected"].add_metric(key, f.expected)
            if f.pct is not None:
                families["pct"].add_metric(key, f.pct)
            if f.pace is not None:
                families["pace"].add_metric(key, f.pace)
            for s in Status:
                status.add_metric([*key, s.value], 1.0 if s is f.status else 0.0)
            done_key = (f.campaign, str(f.level), f.indicator)
            done_counts[done_key] = done_counts.get(done_key, 0) + (f.status is Status.DONE)
        for k, n in done_counts.items():
            done.add_metric(list(k), n)
        yield from families.values()
        yield status
        yield done


@dataclass
class AggregatorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events_applied = Counter(
            "tiendo_aggregator_events_applied_total", "New events stored and counted", registry=r
        )
        self.duplicates = Counter(
            "tiendo_aggregator_duplicates_skipped_total",
            "Events whose event_id was already applied",
            registry=r,
        )
        self.dead_letters = Counter(
            "tiendo_aggregator_dead_letters_total",
            "Events sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.batches = Histogram(
            "tiendo_aggregator_batch_seconds",
            "Time to apply one batch in one transaction",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.freshness = Histogram(
            "tiendo_aggregator_event_freshness_seconds",
            "From ingest acceptance to the counter commit",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
            registry=r,
        )
        self.lag = Gauge(
            "tiendo_aggregator_consumer_lag",
            "Records not yet applied, per partition",
            ["partition"],
            registry=r,
        )
        self.units = UnitCollector()
        r.register(self.units)
