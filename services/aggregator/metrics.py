"""Aggregator metrics. Per-unit figures come from a cached snapshot (refreshed in the
background), so a scrape never runs a query.

Cardinality is bounded by design: per-unit series exist only for units at or above
`metrics_unit_level` (default 2, districts); deeper levels appear only as per-level counts,
and the boards read them from PostgreSQL. docs/metrics.md has the catalogue and the
series-count estimate.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tiendo.metrics import per_campaign
from tiendo.pace import Status

UNIT_LABELS = ("campaign", "unit", "level", "indicator")


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
    projected_completion: datetime | None = None
    last_event_at: datetime | None = None
    events_today: int = 0


@dataclass(frozen=True, slots=True)
class LevelFigures:
    """How many units of one level have a target, and how many reached it (every level)."""

    campaign: str
    level: int
    indicator: str
    units: int
    done: int


@dataclass(frozen=True, slots=True)
class CampaignFigures:
    campaign: str
    starts_at: datetime
    deadline: datetime


@dataclass(frozen=True, slots=True)
class UnitSnapshot:
    """Everything the collector exports, computed at `taken_at`."""

    units: list[UnitFigures] = field(default_factory=list)
    levels: list[LevelFigures] = field(default_factory=list)
    campaigns: list[CampaignFigures] = field(default_factory=list)
    taken_at: datetime | None = None


def _ts(at: datetime) -> float:
    return at.astimezone(UTC).timestamp()


class UnitCollector(Collector):
    """Exports the latest snapshot: per-unit series down to the configured level, per-level
    counts for every level, campaign windows."""

    def __init__(self) -> None:
        self.snapshot = UnitSnapshot()

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        labels = list(UNIT_LABELS)

        def gauge(name: str, documentation: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, documentation, labels=labels)

        value = gauge("tiendo_unit_value", "Rolled-up count of the unit (baseline included)")
        target = gauge("tiendo_unit_target", "Target of the unit")
        expected = gauge("tiendo_unit_expected", "Value the plan expects now")
        pct = gauge("tiendo_unit_pct", "100 × value / target (absent for a zero target)")
        pace = gauge("tiendo_unit_pace", "value / expected (absent while expected is 0)")
        projected = gauge(
            "tiendo_unit_projected_completion_timestamp_seconds",
            "When the 7-day run rate reaches the target (absent when done or not moving)",
        )
        last_event = gauge(
            "tiendo_unit_last_event_timestamp_seconds",
            "occurred_at of the unit's latest counted event (subtree)",
        )
        status = GaugeMetricFamily(
            "tiendo_unit_status", "1 for the unit's current status", labels=[*labels, "status"]
        )
        # A gauge, not a counter: today's count goes down as well as up (a withdrawn
        # subject winner leaves its day, a recount rewrites it, local midnight restarts
        # it), and rate() would read any decrease as a counter reset, i.e. a spike.
        events = gauge(
            "tiendo_unit_events_today",
            "Events counted today (campaign's local day) in the unit's subtree",
        )
        for f in snap.units:
            key = [f.campaign, f.unit, str(f.level), f.indicator]
            value.add_metric(key, f.value)
            target.add_metric(key, f.target)
            expected.add_metric(key, f.expected)
            if f.pct is not None:
                pct.add_metric(key, f.pct)
            if f.pace is not None:
                pace.add_metric(key, f.pace)
            if f.projected_completion is not None:
                projected.add_metric(key, _ts(f.projected_completion))
            if f.last_event_at is not None:
                last_event.add_metric(key, _ts(f.last_event_at))
            for s in Status:
                status.add_metric([*key, s.value], 1.0 if s is f.status else 0.0)
            events.add_metric(key, f.events_today)
        yield from (value, target, expected, pct, pace, projected, last_event, status, events)

        level_labels = ["campaign", "level", "indicator"]
        units = GaugeMetricFamily(
            "tiendo_units", "Units with a positive target, by level", labels=level_labels
        )
        done = GaugeMetricFamily(
            "tiendo_units_done",
            "Units with a positive target that reached it, by level",
            labels=level_labels,
        )
        for lv in snap.levels:
            key = [lv.campaign, str(lv.level), lv.indicator]
            units.add_metric(key, lv.units)
            done.add_metric(key, lv.done)
        yield units
        yield done

        starts = GaugeMetricFamily(
            "tiendo_campaign_start_timestamp_seconds", "Start of the campaign", labels=["campaign"]
        )
        deadline = GaugeMetricFamily(
            "tiendo_campaign_deadline_timestamp_seconds",
            "Deadline of the campaign",
            labels=["campaign"],
        )
        for c in snap.campaigns:
            starts.add_metric([c.campaign], _ts(c.starts_at))
            deadline.add_metric([c.campaign], _ts(c.deadline))
        yield starts
        yield deadline

        taken = GaugeMetricFamily(
            "tiendo_aggregator_unit_snapshot_timestamp_seconds",
            "When the per-unit figures above were computed (they refresh in the background)",
        )
        if snap.taken_at is not None:
            taken.add_metric([], _ts(snap.taken_at))
        yield taken


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
        self.parts_applied_again = Counter(
            "tiendo_aggregator_parts_applied_again_total",
            "A round's part applied again after PostgreSQL's deadlock detector failed it",
            registry=r,
        )
        self.parts_isolated = Counter(
            "tiendo_aggregator_parts_isolated_total",
            "Parts whose transaction failed on what a record holds and were applied in "
            "halves, the record that failed alone dead-lettered (reason unstorable)",
            registry=r,
        )
        self.freshness = Histogram(
            "tiendo_aggregator_event_freshness_seconds",
            "From ingest acceptance to the counter commit",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
            registry=r,
        )
        self.events_held = Gauge(
            "tiendo_aggregator_events_held",
            "Events consumed ahead of the clock, held until their moment",
            registry=r,
        )
        self.lag = Gauge(
            "tiendo_aggregator_consumer_lag",
            "Records not yet applied, per partition",
            ["partition"],
            registry=r,
        )
        self.recounting = Gauge(
            "tiendo_aggregator_recount_in_progress",
            "1 while a rebuild replays the events topic: the per-unit series and the stored "
            "board figures keep their last refresh before it, and the read API answers 503",
            registry=r,
        )
        self.recount_replayed = Gauge(
            "tiendo_aggregator_recount_replayed_ratio",
            "Share of the records a rebuild replays that are applied (1 when none is running)",
            registry=r,
        )
        self.recount_replayed.set(1.0)
        self.campaign_unusable = per_campaign(
            r,
            "aggregator",
            "unusable",
            "1 while a stored campaign fails validation and is left out of counting",
        )
        self.campaign_failing = per_campaign(
            r,
            "aggregator",
            "failing",
            "1 while judging a campaign for the boards fails: its figures are left out",
        )
        self.campaign_move_failing = per_campaign(
            r,
            "aggregator",
            "move_failing",
            "1 while moving a campaign's live counters onto the tree it reports on fails",
        )
        self.campaign_comparison_failing = per_campaign(
            r,
            "aggregator",
            "comparison_failing",
            "1 while storing a campaign's comparison with the one before it fails",
        )
        # Pre-create the bounded label values so that a board shows 0, not "no data",
        # before the first dead letter.
        for reason in (
            "undecodable",
            "unknown_unit",
            "split_unit",
            "unknown_indicator",
            "unstorable",
        ):
            self.dead_letters.labels(reason)
        self.units = UnitCollector()
        r.register(self.units)
