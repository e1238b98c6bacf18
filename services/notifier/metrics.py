"""Notifier metrics."""

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class NotifierMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.notifications = Counter(
            "tiendo_notifier_notifications_total",
            "Delivery attempts by channel and result",
            ["channel", "result"],
            registry=r,
        )
        self.transitions = Counter(
            "tiendo_notifier_alert_transitions_total",
            "Alert lifecycle changes",
            ["rule", "change"],
            registry=r,
        )
        self.firing = Gauge(
            "tiendo_notifier_alerts_firing",
            "Alerts firing now",
            ["rule"],
            registry=r,
        )
        self.evaluations = Counter(
            "tiendo_notifier_evaluations_total",
            "Rule evaluations",
            ["trigger"],
            registry=r,
        )
