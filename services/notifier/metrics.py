"""Notifier metrics."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.notifier.rules import Rule
from tiendo.metrics import per_campaign


@dataclass
class NotifierMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # the (campaign, rule) series `set_firing` exports, to drop those of a campaign gone
    _firing_shown: set[tuple[str, str]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.notifications = Counter(
            "tiendo_notifier_notifications_total",
            "Delivery outcomes by channel and result: each attempt once (delivered, retry, "
            "failed), messages given up without one (failed), cut short (interrupted), "
            "no_address",
            ["channel", "result"],
            registry=r,
        )
        self.queued = Counter(
            "tiendo_notifier_notifications_queued_total",
            "Messages queued for delivery by kind and channel",
            ["kind", "channel"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "tiendo_notifier_delivery_seconds",
            "Duration of one delivery attempt",
            ["channel"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.transitions = Counter(
            "tiendo_notifier_alert_transitions_total",
            "Alert lifecycle changes",
            ["rule", "change"],
            registry=r,
        )
        self.escalations = Counter(
            "tiendo_notifier_escalations_total",
            "Alerts escalated one level up to a parent unit's chief",
            registry=r,
        )
        # per campaign: the overview shows one campaign's (campaigns are few: bounded)
        self.firing = Gauge(
            "tiendo_notifier_alerts_firing",
            "Alerts firing now, by campaign and rule",
            ["campaign", "rule"],
            registry=r,
        )
        self.campaign_failing = per_campaign(
            r,
            "notifier",
            "failing",
            "1 while judging a campaign fails: it is left out of the evaluation, its alerts held",
        )
        self.campaign_follow_ups_failing = per_campaign(
            r,
            "notifier",
            "follow_ups_failing",
            "1 while a campaign's digests or commitment checks fail: they are left out",
        )
        self.campaign_messages_failing = per_campaign(
            r,
            "notifier",
            "messages_failing",
            "Groups (chiefs) of a campaign whose message failed to be planned at the last "
            "pass: left for the next one, the others sent",
        )
        self.feed_skipped = Counter(
            "tiendo_notifier_feed_records_skipped_total",
            "unit-progress records passed over as unreadable (tombstones, other bytes)",
            registry=r,
        )
        self.waiting_for_recount = Gauge(
            "tiendo_notifier_waiting_for_recount",
            "1 while a rebuild replays the events topic: the notifier judges nothing, its "
            "alerts, repeats, escalations, digests and commitment checks wait (docs/alerts.md)",
            registry=r,
        )
        self.evaluations = Counter(
            "tiendo_notifier_evaluations_total",
            "Unit states evaluated",
            ["trigger"],
            registry=r,
        )
        self.evaluation_seconds = Histogram(
            "tiendo_notifier_evaluation_seconds",
            "Duration of one evaluation pass",
            ["trigger"],
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )

    def set_firing(self, counts: Mapping[tuple[str, str], int], campaigns: Iterable[str]) -> None:
        """`tiendo_notifier_alerts_firing` from one count of the alerts table ((campaign,
        rule) → alerts firing): every rule of each campaign that exists, at 0 where none
        fires (a board shows 0, not "no data"), and whatever still fires for a campaign
        that does not; the series of a campaign gone since the last count are dropped."""
        shown = {(c, r.value) for c in campaigns for r in Rule} | set(counts)
        # removed one by one rather than cleared: a scrape meanwhile sees no gap
        for labels in self._firing_shown - shown:
            self.firing.remove(*labels)
        for campaign, rule in shown:
            self.firing.labels(campaign, rule).set(counts.get((campaign, rule), 0))
        self._firing_shown = shown
