"""Chi tiết đơn vị: one unit's drill-down (PostgreSQL and Prometheus)."""

from typing import Any

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models import common

from scripts.boards.kit import (
    CAMPAIGN_SQL,
    FIGURE_COLUMNS,
    SHOWN,
    UNIT_SQL,
    Grid,
    Sql,
    against_plan,
    assemble,
    base_dashboard,
    display,
    figures,
    panel,
    sql_table,
    unit_of,
)


def unit_board() -> Any:
    g = Grid()
    d = (
        base_dashboard(
            "tiendo-unit",
            "Chi tiết đơn vị",
            "Unit drill-down: the unit's figures per indicator, its value against the plan over "
            "time, its daily increments, its children and its alerts. Figures come from "
            "PostgreSQL (any level); the curves over time from Prometheus for units down to "
            "the per-unit metrics level (2 by default).",
            "now-30d",
        )
        .with_variable(CAMPAIGN_SQL)
        .with_variable(UNIT_SQL)
    )
    own = f"""{figures("unit = ${unit:sqlstring}")}
SELECT i.name AS indicator_name, {SHOWN},
       (SELECT count(*) FILTER (WHERE c.status = 'done') || ' / ' || count(*)
        FROM board_figures c
        WHERE c.campaign_id = f.campaign_id AND c.parent_code = f.unit
          AND c.indicator = f.indicator) AS children
FROM f
JOIN indicators i ON i.code = f.indicator
ORDER BY f.indicator
"""
    daily = """
SELECT (d.day::timestamp AT TIME ZONE c.timezone) AS "time", d.indicator AS metric,
       d.increments AS value
FROM campaigns c
JOIN subtree_days d ON d.campaign_id = c.id
WHERE c.id = ${campaign:sqlstring} AND d.unit = ${unit:sqlstring}
  AND d.day BETWEEN $__timeFrom()::date - 1 AND $__timeTo()::date + 1
ORDER BY 1, 2
"""
    children = f"""{figures("parent_code = ${unit:sqlstring}")}
SELECT f.unit AS code, f.unit_name AS name, i.name AS indicator_name, {SHOWN}
FROM f
JOIN indicators i ON i.code = f.indicator
ORDER BY f.indicator, f.pct NULLS FIRST, f.unit
"""
    alerts = """
SELECT a.indicator, a.rule, a.state, a.since, a.fired_at, a.resolved_at, a.escalation_level
FROM alerts a
WHERE a.campaign_id = ${campaign:sqlstring} AND a.unit = ${unit:sqlstring}
ORDER BY a.since DESC
LIMIT 50
"""
    compared = """
SELECT b.unit, u.name AS unit_name, b.indicator, b.day, b.value, b.other_value,
       b.value - b.other_value AS difference, b.unallocated, b.other_id
FROM board_comparisons b
JOIN units u ON u.code = b.unit
WHERE b.campaign_id = ${campaign:sqlstring}
  AND (b.unit = ${unit:sqlstring} OR u.parent_code = ${unit:sqlstring})
  AND b.day = (SELECT max(day) FROM board_comparisons WHERE campaign_id = ${campaign:sqlstring})
ORDER BY b.indicator, u.level, b.value - b.other_value"""
    return assemble(
        d,
        sql_table(
            "Hiện trạng theo chỉ tiêu",
            "The unit's figures now, per indicator (PostgreSQL, any level).",
            g.at(24, 6),
            own,
            FIGURE_COLUMNS,
        ),
        against_plan(
            "Thực hiện so với kế hoạch",
            "The unit's value (solid) against the plan (dashed), per indicator. Prometheus "
            "keeps these only for units down to the per-unit metrics level; for deeper units "
            "see the daily increments and the table above.",
            'campaign="$campaign", unit="$unit"',
            g.at(12, 9),
            target=False,
        ),
        panel(
            timeseries.Panel(),
            "Số tăng thêm mỗi ngày",
            "Counted increments per local day in the unit's subtree, per indicator "
            "(PostgreSQL, any level). Snapshot reports move the value, not these bars.",
            g.at(12, 9),
            Sql(daily, "time_series"),
        )
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60),
        sql_table(
            "Các đơn vị trực thuộc",
            "Direct children of the unit, per indicator, lowest pct first.",
            g.at(24, 12),
            children,
            FIGURE_COLUMNS,
        ),
        sql_table(
            "So với đợt trước, cùng ngày của đợt",
            "The unit and its children against the campaign before this one (the latest that "
            "ended by its start and counts the indicator), at the same whole day of each: "
            "the earlier figures carried onto today's units through the crosswalk. "
            "'Chưa phân bổ' is what wards split without declared shares left at the unit "
            "(docs/units-over-time.md). Stored by the aggregator once the day has passed.",
            g.at(24, 10),
            compared,
            [
                display("unit", "Mã"),
                display("unit_name", "Đơn vị"),
                display("indicator", "Chỉ tiêu"),
                display("day", "Ngày thứ"),
                display("value", "Đợt này"),
                display("other_value", "Đợt trước"),
                display("difference", "Chênh lệch"),
                display("unallocated", "Chưa phân bổ"),
                display("other_id", "So với đợt"),
            ],
        ),
        sql_table(
            "Cảnh báo của đơn vị",
            "The unit's alerts (notifier), newest first: rule, state, since when.",
            g.at(24, 8),
            alerts,
            [
                display("indicator", "Chỉ tiêu"),
                display("rule", "Quy tắc"),
                display("state", "Tình trạng"),
                display("since", "Từ lúc", unit_of("dateTimeAsLocal")),
                display("fired_at", "Bật lúc", unit_of("dateTimeAsLocal")),
                display("resolved_at", "Hết lúc", unit_of("dateTimeAsLocal")),
                display("escalation_level", "Cấp báo cáo lên"),
            ],
        ),
    )
