"""Tổng quan đợt cao điểm: the campaign overview (Prometheus)."""

from typing import Any

from grafana_foundation_sdk.builders import bargauge, dashboard, piechart, stat
from grafana_foundation_sdk.models import common

from scripts.boards.kit import (
    ALARM,
    CAMPAIGN_PROM,
    CITY,
    PACE_THRESHOLDS,
    PCT_THRESHOLDS,
    Grid,
    against_plan,
    assemble,
    base_dashboard,
    decimals,
    panel,
    prom,
    series,
    status_mapping,
    thresholds,
    unit_of,
)


def overview() -> Any:
    g = Grid()
    d = base_dashboard(
        "tiendo-overview",
        "Tổng quan đợt cao điểm",
        "Campaign overview: the city/province per indicator against the plan, projected "
        "completion, units that reached their target per level, event rate and alerts.",
        "now-7d",
    ).with_variable(CAMPAIGN_PROM)

    def city(metric: str, scale: str = "") -> Any:
        return prom(f"max by (indicator) ({metric}{{{CITY}}}){scale}", "{{indicator}}")

    deadline = 'max(tiendo_campaign_deadline_timestamp_seconds{campaign="$campaign"})'
    return assemble(
        d,
        dashboard.Row("Toàn thành phố / tỉnh").grid_pos(g.row()),
        panel(
            stat.Panel(),
            "Tỷ lệ hoàn thành",
            "Rolled-up value of the level-1 unit over its target, per indicator.",
            g.at(6, 5),
            city("tiendo_unit_pct"),
        )
        .unit("percent")
        .decimals(1)
        .thresholds(thresholds(*PCT_THRESHOLDS)),
        panel(
            stat.Panel(),
            "Tiến độ so với kế hoạch",
            "Pace = value / expected by the plan now (1 = exactly on plan; below the "
            "campaign's threshold, 0.9 by default, the unit is behind).",
            g.at(6, 5),
            city("tiendo_unit_pace"),
        )
        .decimals(2)
        .thresholds(thresholds(*PACE_THRESHOLDS)),
        panel(
            stat.Panel(),
            "Dự kiến về đích",
            "When the level-1 unit reaches its target at its 7-day run rate, per indicator "
            "(no value: already done, or no progress in the last 7 days).",
            g.at(6, 5),
            city("tiendo_unit_projected_completion_timestamp_seconds", " * 1000"),
        )
        .unit("dateTimeAsLocalNoDateIfToday")
        .color_mode(common.BigValueColorMode.NONE),
        panel(
            stat.Panel(),
            "Hạn chót và số ngày còn lại",
            "The campaign's deadline and the days left until it.",
            g.at(6, 5),
            prom(f"{deadline} * 1000", "Hạn chót"),
            prom(f"clamp_min(({deadline} - time()) / 86400, 0)", "Số ngày còn lại", "B"),
        )
        .override_by_name("Hạn chót", [unit_of("dateTimeAsLocal")])
        .override_by_name("Số ngày còn lại", [decimals(1), unit_of("d")])
        .color_mode(common.BigValueColorMode.NONE),
        against_plan(
            "Kết quả thực hiện so với kế hoạch",
            "Value of the level-1 unit (solid) against the plan line (dashed) and the "
            "target, per indicator.",
            CITY,
            g.at(16, 9),
            target=True,
        ),
        panel(
            piechart.Panel(),
            "Trạng thái các đơn vị cấp 2",
            "Level-2 units (communes since July 2025, districts before) by status, "
            "all indicators together.",
            g.at(8, 9),
            prom(
                "sum by (status) (max by (unit, indicator, status) "
                '(tiendo_unit_status{campaign="$campaign", level="2"}))',
                "{{status}}",
                instant=True,
            ),
        ).mappings([status_mapping()]),
        dashboard.Row("Đơn vị về đích").grid_pos(g.row()),
        panel(
            bargauge.Panel(),
            "Tỷ lệ đơn vị về đích theo cấp",
            "Share of the units of each level (with a positive target) that reached it, per "
            "indicator. Counted for every level, deeper than the per-unit metrics too.",
            g.at(10, 8),
            prom(
                'tiendo:units_done:ratio{campaign="$campaign"} * 100',
                "Cấp {{level}} — {{indicator}}",
                instant=True,
            ),
        )
        .unit("percent")
        .min(0)
        .max(100)
        .thresholds(thresholds(*PCT_THRESHOLDS)),
        series(
            "Số đơn vị về đích theo cấp",
            "Units that reached their target, per level and indicator, over time.",
            "short",
            g.at(14, 8),
            prom(
                'max by (level, indicator) (tiendo_units_done{campaign="$campaign"})',
                "Cấp {{level}} — {{indicator}}",
            ),
        ),
        dashboard.Row("Hoạt động").grid_pos(g.row()),
        series(
            "Sự kiện tiếp nhận mỗi phút",
            "Events accepted by ingest per minute, per indicator (all campaigns).",
            "short",
            g.at(12, 8),
            prom(
                "60 * sum by (indicator) "
                "(rate(tiendo_ingest_events_accepted_total[$__rate_interval]))",
                "{{indicator}}",
            ),
        ),
        series(
            "Sự kiện mỗi phút theo đơn vị cấp 2 (10 cao nhất)",
            "Events counted per minute in each level-2 unit's subtree (recording rule "
            "tiendo:unit_events:per_minute), the ten busiest.",
            "short",
            g.at(12, 8),
            prom(
                "topk(10, max by (unit) "
                '(tiendo:unit_events:per_minute{campaign="$campaign", level="2"}))',
                "{{unit}}",
            ),
        ),
        panel(
            stat.Panel(),
            "Cảnh báo đang bật",
            "Alerts firing now, by rule (notifier).",
            g.at(24, 4),
            prom("max by (rule) (tiendo_notifier_alerts_firing)", "{{rule}}"),
        ).thresholds(ALARM),
    )
