"""Sức khoẻ hệ thống: pipeline health (Prometheus and PostgreSQL)."""

from typing import Any

from grafana_foundation_sdk.builders import dashboard, stat

from scripts.boards.kit import (
    ALARM,
    UP,
    Grid,
    assemble,
    base_dashboard,
    display,
    panel,
    prom,
    series,
    sql_table,
    thresholds,
    unit_of,
)


def rate(metric: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}[$__rate_interval]))"


def quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, {rate(histogram + '_bucket', 'le')})"


def pipeline() -> Any:
    g = Grid()
    d = base_dashboard(
        "tiendo-pipeline",
        "Sức khoẻ hệ thống",
        "Pipeline health: ingest rate, errors by reason and latency; consumer lag, apply "
        "rate, event freshness and dead letters; notification delivery and alerts.",
        "now-6h",
    )

    def chart(title: str, description: str, unit: str, *targets: Any) -> Any:
        return series(title, description, unit, g.at(8, 8), *targets)

    dead_letters = """
SELECT created_at, topic, partition, kafka_offset, event_id, reason
FROM dead_letters
ORDER BY created_at DESC
LIMIT 50
"""
    deliveries = """
SELECT channel, status, count(*) AS notifications, sum(attempts) AS attempts,
       max(created_at) AS latest
FROM notifications
GROUP BY channel, status
ORDER BY channel, status
"""
    return assemble(
        d,
        dashboard.Row("Tiếp nhận (ingest)").grid_pos(g.row()),
        panel(
            stat.Panel(),
            "Dịch vụ hoạt động",
            "1 while Prometheus can scrape the service.",
            g.at(16, 4),
            prom('up{job=~"tiendo-.*"}', "{{job}}"),
        ).thresholds(UP),
        panel(
            stat.Panel(),
            "Kafka sẵn sàng",
            "1 while ingest's Kafka producer is connected.",
            g.at(8, 4),
            prom("min(tiendo_ingest_kafka_ready)", "Kafka"),
        ).thresholds(UP),
        chart(
            "Sự kiện được nhận mỗi giây",
            "Events acknowledged by Kafka and answered 202, per second and indicator.",
            "short",
            prom(rate("tiendo_ingest_events_accepted_total", "indicator"), "{{indicator}}"),
        ),
        chart(
            "Sự kiện bị từ chối theo lý do",
            "Refused events per second by reason (invalid, unauthorized, forbidden, "
            "body_too_large, malformed_json, malformed_protobuf, unsupported_media_type, "
            "rate_limited, tokens_unavailable, starting, kafka_unavailable).",
            "short",
            prom(rate("tiendo_ingest_events_rejected_total", "reason"), "{{reason}}"),
        ),
        chart(
            "Thời gian phản hồi tiếp nhận",
            "Time to answer POST /v1/events, Kafka acknowledgement included: p50 and p99.",
            "s",
            prom(quantile(0.5, "tiendo_ingest_request_duration_seconds"), "p50"),
            prom("tiendo:ingest_request_duration_seconds:p99_5m", "p99 (5 phút)", "B"),
        ),
        chart(
            "Yêu cầu theo mã HTTP",
            "Event requests per second by HTTP status.",
            "reqps",
            prom(rate("tiendo_ingest_requests_total", "status"), "{{status}}"),
        ),
        dashboard.Row("Tổng hợp (aggregator)").grid_pos(g.row()),
        chart(
            "Độ trễ tiêu thụ theo phân vùng",
            "Records of progress-events not yet applied, per partition (consumer lag).",
            "short",
            prom("max by (partition) (tiendo_aggregator_consumer_lag)", "phân vùng {{partition}}"),
        ),
        chart(
            "Sự kiện áp dụng và trùng lặp mỗi giây",
            "New events counted, and deliveries skipped because the event_id was applied.",
            "short",
            prom("sum(rate(tiendo_aggregator_events_applied_total[$__rate_interval]))", "áp dụng"),
            prom(
                "sum(rate(tiendo_aggregator_duplicates_skipped_total[$__rate_interval]))",
                "trùng lặp",
                "B",
            ),
        ),
        chart(
            "Độ tươi của số liệu",
            "From ingest's acceptance to the counter commit: p50 and p99 (freshness).",
            "s",
            prom(quantile(0.5, "tiendo_aggregator_event_freshness_seconds"), "p50"),
            prom("tiendo:aggregator_event_freshness_seconds:p99_5m", "p99 (5 phút)", "B"),
        ),
        chart(
            "Thời gian áp dụng một lô",
            "Time to apply one batch in one transaction: p99.",
            "s",
            prom(quantile(0.99, "tiendo_aggregator_batch_seconds"), "p99"),
        ),
        panel(
            stat.Panel(),
            "Thư chết (dead letters)",
            "Events that can never be applied (undecodable, unknown unit or indicator), sent "
            "to the dead-letter topic, by reason, since the aggregator started.",
            g.at(6, 8),
            prom("sum by (reason) (tiendo_aggregator_dead_letters_total)", "{{reason}}"),
        ).thresholds(ALARM),
        panel(
            stat.Panel(),
            "Tuổi số liệu theo đơn vị",
            "Seconds since the per-unit metrics and the boards' stored figures were "
            "recomputed (they refresh in the background every metrics_refresh_seconds).",
            g.at(5, 8),
            prom("time() - max(tiendo_aggregator_unit_snapshot_timestamp_seconds)", "tuổi"),
        )
        .unit("s")
        .thresholds(thresholds((None, "green"), (60.0, "orange"), (300.0, "red"))),
        panel(
            stat.Panel(),
            "Đợt bị bỏ qua",
            "1 for a campaign left out: its stored definition fails validation (not counted, "
            "docs/admin.md), or judging it raises (left out of the boards' refresh and the "
            "notifier's evaluation, its alerts held), or storing its comparison with the "
            "campaign before it raises, or its digests or commitment checks raise "
            "(docs/alerts.md), or moving its counters onto a new tree raises "
            "(docs/units-over-time.md); for messages, how many of its chiefs' messages "
            "raise while being planned (docs/alerts.md). 0 for the others.",
            g.at(5, 8),
            prom(
                'max by (campaign) ({__name__=~"tiendo_(aggregator|notifier)_campaign_'
                "(unusable|failing|comparison_failing|move_failing|follow_ups_failing|"
                'messages_failing)"})',
                "{{campaign}}",
            ),
        ).thresholds(ALARM),
        sql_table(
            "Thư chết gần nhất",
            "The latest dead letters recorded by the aggregator (PostgreSQL).",
            g.at(24, 8),
            dead_letters,
            [
                display("created_at", "Lúc", unit_of("dateTimeAsLocal")),
                display("topic", "Topic"),
                display("partition", "Phân vùng"),
                display("kafka_offset", "Offset"),
                display("event_id", "Mã sự kiện"),
                display("reason", "Lý do"),
            ],
        ),
        dashboard.Row("Cảnh báo và thông báo (notifier)").grid_pos(g.row()),
        chart(
            "Gửi thông báo theo kênh và kết quả",
            "Delivery attempts per second by channel and result (delivered, retry, failed).",
            "short",
            prom(
                rate("tiendo_notifier_notifications_total", "channel, result"),
                "{{channel}} — {{result}}",
            ),
        ),
        chart(
            "Cảnh báo đang bật theo quy tắc",
            "Alerts firing now, by rule, every campaign's together.",
            "short",
            # one copy per campaign across the notifier replicas (max), then the campaigns'
            prom(
                "sum by (rule) (max by (campaign, rule) (tiendo_notifier_alerts_firing))",
                "{{rule}}",
            ),
        ),
        chart(
            "Đánh giá quy tắc mỗi giây",
            "Rule evaluations per second, by trigger (feed update or clock).",
            "short",
            prom(rate("tiendo_notifier_evaluations_total", "trigger"), "{{trigger}}"),
        ),
        sql_table(
            "Nhật ký gửi thông báo",
            "Notifications in the delivery log by channel and status (PostgreSQL).",
            g.at(24, 8),
            deliveries,
            [
                display("channel", "Kênh"),
                display("status", "Trạng thái"),
                display("notifications", "Số thông báo"),
                display("attempts", "Số lần gửi"),
                display("latest", "Gần nhất", unit_of("dateTimeAsLocal")),
            ],
        ),
    )
