"""Grafana boards as code: `make dashboards` writes deploy/grafana/dashboards/*.json.

Four boards, titles and labels in Vietnamese (the operators' language), descriptions in
English for the engineers who keep them:

- tiendo-overview     Tổng quan đợt cao điểm (campaign overview, Prometheus)
- tiendo-leaderboard  Bảng xếp hạng — giao ban tuần (weekly briefing, PostgreSQL)
- tiendo-unit         Chi tiết đơn vị (unit drill-down, PostgreSQL and Prometheus)
- tiendo-pipeline     Sức khoẻ hệ thống (pipeline health, Prometheus and PostgreSQL)

Every query of every panel and variable is executed against a real Prometheus and a real
PostgreSQL by tests/boards/test_dashboards.py. Per-unit Prometheus series stop at the
aggregator's `metrics_unit_level` (default 2), so whatever must work for any level (the
leaderboard, the unit's own figures and children) is read from PostgreSQL. The SQL figures
follow tiendo/pace.py (plan with milestones, pct, pace, stale, behind); see docs/metrics.md
for the one approximation (the run rate behind `at_risk`).
"""

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from grafana_foundation_sdk.builders import (
    bargauge,
    dashboard,
    piechart,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DynamicConfigValue,
    GridPos,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "deploy" / "grafana" / "dashboards"

PROMETHEUS = DataSourceRef(type_val="prometheus", uid="prometheus")
POSTGRES = DataSourceRef(type_val="grafana-postgresql-datasource", uid="postgres")

STATUS_TEXT = {
    "done": ("Về đích", "green"),
    "on_track": ("Đúng tiến độ", "blue"),
    "at_risk": ("Có nguy cơ", "orange"),
    "behind": ("Chậm tiến độ", "red"),
    "stale": ("Không báo cáo", "purple"),
}


# -- SQL queries (the SDK has no builder for the PostgreSQL datasource) --------------------
class SqlQuery(cogvariants.Dataquery):
    """A raw-SQL query of Grafana's PostgreSQL datasource."""

    def __init__(self, raw_sql: str, fmt: Literal["table", "time_series"], ref_id: str) -> None:
        self.raw_sql = raw_sql
        self.fmt = fmt
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": POSTGRES.to_json(),
            "editorMode": "code",
            "format": self.fmt,
            "rawQuery": True,
            "rawSql": self.raw_sql,
        }


class Sql(cogbuilder.Builder[SqlQuery]):
    def __init__(
        self, raw_sql: str, fmt: Literal["table", "time_series"] = "table", ref_id: str = "A"
    ) -> None:
        self._internal = SqlQuery(raw_sql.strip(), fmt, ref_id)

    def build(self) -> SqlQuery:
        return self._internal


def prom(expr: str, legend: str = "", ref_id: str = "A", *, instant: bool = False) -> Any:
    q = prometheus.Dataquery().expr(expr).ref_id(ref_id).datasource(PROMETHEUS)
    if legend:
        q = q.legend_format(legend)
    return q.instant() if instant else q.range()


# -- layout -------------------------------------------------------------------------------
@dataclass
class Grid:
    """Places panels left to right on Grafana's 24-column grid."""

    x: int = 0
    y: int = 0
    row_height: int = 0

    def at(self, w: int, h: int) -> GridPos:
        if self.x + w > 24:
            self.newline()
        pos = GridPos(h=h, w=w, x=self.x, y=self.y)
        self.x += w
        self.row_height = max(self.row_height, h)
        return pos

    def newline(self) -> Self:
        self.y += self.row_height
        self.x = 0
        self.row_height = 0
        return self

    def row(self) -> GridPos:
        self.newline()
        pos = GridPos(h=1, w=24, x=0, y=self.y)
        self.y += 1
        return pos


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in steps])
    )


PACE_THRESHOLDS = ((None, "red"), (0.9, "orange"), (1.0, "green"))
PCT_THRESHOLDS = ((None, "red"), (50.0, "orange"), (100.0, "green"))


def status_mapping() -> ValueMap:
    return ValueMap(
        options={
            key: ValueMappingResult(text=text, color=color, index=i)
            for i, (key, (text, color)) in enumerate(STATUS_TEXT.items())
        }
    )


def display(name: str, title: str, *extra: DynamicConfigValue) -> tuple[str, list[Any]]:
    return name, [DynamicConfigValue(id_val="displayName", value=title), *extra]


def colored_text() -> DynamicConfigValue:
    return DynamicConfigValue(
        id_val="custom.cellOptions",
        value={"type": "color-text"},
    )


def colored_background() -> DynamicConfigValue:
    return DynamicConfigValue(
        id_val="custom.cellOptions",
        value={"type": "color-background", "mode": "basic"},
    )


def unit_of(unit: str) -> DynamicConfigValue:
    return DynamicConfigValue(id_val="unit", value=unit)


def decimals(n: int) -> DynamicConfigValue:
    return DynamicConfigValue(id_val="decimals", value=n)


def apply_overrides(panel: Any, columns: list[tuple[str, list[Any]]]) -> Any:
    for name, props in columns:
        panel = panel.override_by_name(name, props)
    return panel


# -- variables ----------------------------------------------------------------------------
def sql_variable(name: str, label: str, query: str, description: str) -> Any:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(POSTGRES)
        .query(query.strip())
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(VariableSort.DISABLED)
    )


def prom_variable(name: str, label: str, query: str, description: str) -> Any:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(PROMETHEUS)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


CAMPAIGN_SQL = sql_variable(
    "campaign",
    "Đợt cao điểm",
    "SELECT id AS __value, name AS __text FROM campaigns ORDER BY starts_at DESC, id",
    "The campaign (newest first).",
)
INDICATOR_SQL = sql_variable(
    "indicator",
    "Chỉ tiêu",
    """
SELECT i.code AS __value, i.name AS __text
FROM campaigns c
CROSS JOIN LATERAL unnest(c.indicators) AS x (code)
JOIN indicators i ON i.code = x.code
WHERE c.id = ${campaign:sqlstring}
ORDER BY i.code
""",
    "One of the campaign's indicators.",
)
LEVEL_SQL = sql_variable(
    "level",
    "Cấp",
    "SELECT level AS __value, 'Cấp ' || level AS __text FROM units GROUP BY level ORDER BY level",
    "Level of the unit tree: 1 city/province, 2 district, 3 ward/commune, 4 residential group.",
)
UNIT_SQL = sql_variable(
    "unit",
    "Đơn vị",
    "SELECT code AS __value, code || ' — ' || name AS __text FROM units ORDER BY level, code",
    "Any unit of the tree, whatever its level (type to search by code or name).",
)
CAMPAIGN_PROM = prom_variable(
    "campaign",
    "Đợt cao điểm",
    "label_values(tiendo_campaign_deadline_timestamp_seconds, campaign)",
    "The campaign, as exported by the aggregator.",
)


# -- the SQL figures: tiendo/pace.py in SQL, for any level --------------------------------
def figures_sql(scope: str, *, indicator: bool) -> str:
    """WITH … `judged`: one row per (unit, indicator) in `scope` with plan, pct, pace,
    projection and status at now(), by the rules of tiendo/pace.py."""
    only_indicator = "AND p.indicator = ${indicator:sqlstring}" if indicator else ""
    return f"""
WITH c AS (
    SELECT id, starts_at, deadline, timezone, behind_threshold, stale_after, milestones,
           least(now(), deadline) AS t_campaign,
           least(interval '7 days', least(now(), deadline) - starts_at) AS win
    FROM campaigns WHERE id = ${{campaign:sqlstring}}
), base AS (
    SELECT u.code, u.name, u.level, u.parent_code, p.indicator, p.value, p.baseline,
           p.target, p.last_event_at, c.id AS campaign_id, c.starts_at, c.timezone,
           c.behind_threshold, c.stale_after, c.milestones, c.t_campaign, c.win,
           coalesce(p.deadline, c.deadline) AS deadline,
           least(now(), coalesce(p.deadline, c.deadline)) AS t
    FROM c
    JOIN progress p ON p.campaign_id = c.id
    JOIN units u ON u.code = p.unit
    WHERE {scope} {only_indicator}
), planned AS (
    -- share of (target - baseline) due at t: piecewise linear through the milestones
    SELECT b.*,
           CASE WHEN b.t <= b.starts_at THEN 0.0
                WHEN b.t >= b.deadline THEN 1.0
                ELSE (
                    SELECT least(1.0, greatest(0.0, s.f0 + (s.f1 - s.f0) * CASE
                               WHEN s.t1 > s.t0 THEN extract(epoch FROM b.t - s.t0)
                                                     / extract(epoch FROM s.t1 - s.t0)
                               ELSE 1.0 END))
                    FROM (
                        SELECT pt.at AS t0, pt.fr AS f0,
                               lead(pt.at) OVER w AS t1, lead(pt.fr) OVER w AS f1
                        FROM (
                            SELECT b.starts_at AS at, 0.0::float8 AS fr
                            UNION ALL
                            SELECT (m ->> 'at')::timestamptz, (m ->> 'fraction')::float8
                            FROM jsonb_array_elements(b.milestones) AS m
                            WHERE (m ->> 'at')::timestamptz > b.starts_at
                              AND (m ->> 'at')::timestamptz < b.deadline
                            UNION ALL
                            SELECT b.deadline, 1.0::float8
                        ) AS pt
                        WINDOW w AS (ORDER BY pt.at, pt.fr)
                    ) AS s
                    WHERE s.t0 <= b.t AND b.t <= s.t1
                    ORDER BY s.t0, s.f0
                    LIMIT 1)
           END AS f
    FROM base b
), recent AS (
    -- counted increments of each subtree over the run-rate window, by whole local days
    SELECT lineage.code, d.indicator, sum(d.increments) AS inc
    FROM c
    JOIN daily_counts d ON d.campaign_id = c.id
    JOIN units du ON du.code = d.unit
    CROSS JOIN LATERAL unnest(du.ancestors || du.code) AS lineage (code)
    WHERE d.day >= ((c.t_campaign - c.win) AT TIME ZONE c.timezone)::date
      AND lineage.code IN (SELECT code FROM base)
    GROUP BY 1, 2
), figured AS (
    SELECT pl.*,
           pl.baseline + (pl.target - pl.baseline) * pl.f AS expected,
           CASE WHEN pl.target > 0 THEN 100.0 * pl.value / pl.target END AS pct,
           CASE WHEN pl.win >= interval '1 hour'
                THEN coalesce(r.inc, 0) / (extract(epoch FROM pl.win) / 86400.0) END AS run_rate
    FROM planned pl
    LEFT JOIN recent r ON r.code = pl.code AND r.indicator = pl.indicator
), projected AS (
    SELECT fg.*,
           CASE WHEN fg.expected > 0 THEN fg.value / fg.expected END AS pace,
           CASE WHEN fg.value < fg.target AND fg.run_rate > 0
                THEN fg.t + (fg.target - fg.value) / fg.run_rate * interval '1 day' END
               AS projected_completion
    FROM figured fg
), judged AS (
    SELECT pj.*,
           CASE WHEN pj.value >= pj.target THEN 'done'
                WHEN now() <= pj.starts_at THEN 'on_track'
                WHEN pj.t - greatest(pj.starts_at, coalesce(pj.last_event_at, pj.starts_at))
                     > pj.stale_after THEN 'stale'
                WHEN pj.pace < pj.behind_threshold THEN 'behind'
                WHEN pj.projected_completion IS NULL
                     OR pj.projected_completion > pj.deadline THEN 'at_risk'
                ELSE 'on_track'
           END AS status
    FROM projected pj
)"""


MUST_EXPLAIN = "(r.rank > r.ranked_units - ${explain} OR r.status IN ('behind', 'stale'))"
RANKED_SQL = (
    figures_sql("u.level = ${level}", indicator=True)
    + """
, ranked AS (
    SELECT j.*,
           row_number() OVER (ORDER BY j.pct DESC NULLS LAST, j.pace DESC NULLS LAST, j.code)
               AS rank,
           count(*) OVER () AS ranked_units
    FROM judged j
)"""
)
LEADERBOARD_SQL = (
    RANKED_SQL
    + f"""
SELECT r.rank, r.code, r.name, par.name AS parent, r.value, r.target,
       round(r.pct::numeric, 2) AS pct, round(r.expected::numeric) AS expected,
       round(r.pace::numeric, 3) AS pace, r.status, r.projected_completion, r.last_event_at,
       CASE WHEN {MUST_EXPLAIN} THEN 'Phải giải trình' ELSE '' END AS must_explain
FROM ranked r
LEFT JOIN units par ON par.code = r.parent_code
ORDER BY r.rank
"""
)

LEADERBOARD_COLUMNS = [
    display("rank", "Hạng", DynamicConfigValue(id_val="custom.width", value=60)),
    display("code", "Mã"),
    display("name", "Đơn vị"),
    display("parent", "Trực thuộc"),
    display("value", "Thực hiện"),
    display("target", "Chỉ tiêu"),
    display(
        "pct",
        "Tỷ lệ (%)",
        DynamicConfigValue(id_val="thresholds", value=thresholds(*PCT_THRESHOLDS).build()),
        colored_text(),
    ),
    display("expected", "Kế hoạch đến nay"),
    display(
        "pace",
        "Tiến độ so với kế hoạch",
        DynamicConfigValue(id_val="thresholds", value=thresholds(*PACE_THRESHOLDS).build()),
        colored_text(),
    ),
    display(
        "status",
        "Trạng thái",
        DynamicConfigValue(id_val="mappings", value=[status_mapping()]),
        colored_background(),
    ),
    display("projected_completion", "Dự kiến về đích", unit_of("dateTimeAsLocal")),
    display("last_event_at", "Báo cáo gần nhất", unit_of("dateTimeFromNow")),
    display(
        "must_explain",
        "Phải giải trình",
        DynamicConfigValue(
            id_val="mappings",
            value=[
                ValueMap(
                    options={
                        "Phải giải trình": ValueMappingResult(color="red", index=0),
                    }
                )
            ],
        ),
        colored_background(),
    ),
]


def figures_table(title: str, description: str, query: str, pos: GridPos) -> Any:
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(POSTGRES)
        .with_target(Sql(query))
        .grid_pos(pos)
        .filterable(True)
    )
    return apply_overrides(panel, LEADERBOARD_COLUMNS + INDICATOR_COLUMNS)


INDICATOR_COLUMNS = [
    display("indicator_name", "Chỉ tiêu"),
    display("children", "Đơn vị trực thuộc về đích"),
]


# -- the boards ---------------------------------------------------------------------------
def base_dashboard(uid: str, title: str, description: str, time_from: str) -> Any:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["tiendo"])
        .timezone("browser")
        .time(time_from, "now")
        .refresh("30s")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .editable()
        .links(
            [
                dashboard.DashboardLink("Các bảng tiendo")
                .type(DashboardLinkType.DASHBOARDS)
                .tags(["tiendo"])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            ]
        )
    )


CITY = 'campaign="$campaign", level="1"'


def overview() -> Any:
    g = Grid()
    d = base_dashboard(
        "tiendo-overview",
        "Tổng quan đợt cao điểm",
        "Campaign overview: the city/province per indicator against the plan, projected "
        "completion, units that reached their target per level, event rate and alerts.",
        "now-7d",
    ).with_variable(CAMPAIGN_PROM)
    d = d.with_row(dashboard.Row("Toàn thành phố / tỉnh").grid_pos(g.row()))
    d = d.with_panel(
        stat.Panel()
        .title("Tỷ lệ hoàn thành")
        .description("Rolled-up value of the level-1 unit over its target, per indicator.")
        .datasource(PROMETHEUS)
        .with_target(prom(f"max by (indicator) (tiendo_unit_pct{{{CITY}}})", "{{indicator}}"))
        .unit("percent")
        .decimals(1)
        .thresholds(thresholds(*PCT_THRESHOLDS))
        .grid_pos(g.at(6, 5))
    )
    d = d.with_panel(
        stat.Panel()
        .title("Tiến độ so với kế hoạch")
        .description(
            "Pace = value / expected by the plan now (1 = exactly on plan; below the "
            "campaign's threshold, 0.9 by default, the unit is behind)."
        )
        .datasource(PROMETHEUS)
        .with_target(prom(f"max by (indicator) (tiendo_unit_pace{{{CITY}}})", "{{indicator}}"))
        .decimals(2)
        .thresholds(thresholds(*PACE_THRESHOLDS))
        .grid_pos(g.at(6, 5))
    )
    d = d.with_panel(
        stat.Panel()
        .title("Dự kiến về đích")
        .description(
            "When the level-1 unit reaches its target at its 7-day run rate, per indicator "
            "(no value: already done, or no progress in the last 7 days)."
        )
        .datasource(PROMETHEUS)
        .with_target(
            prom(
                "max by (indicator) "
                f"(tiendo_unit_projected_completion_timestamp_seconds{{{CITY}}}) * 1000",
                "{{indicator}}",
            )
        )
        .unit("dateTimeAsLocalNoDateIfToday")
        .color_mode(common.BigValueColorMode.NONE)
        .grid_pos(g.at(6, 5))
    )
    d = d.with_panel(
        stat.Panel()
        .title("Hạn chót và số ngày còn lại")
        .description("The campaign's deadline and the days left until it.")
        .datasource(PROMETHEUS)
        .with_target(
            prom(
                'max(tiendo_campaign_deadline_timestamp_seconds{campaign="$campaign"}) * 1000',
                "Hạn chót",
            )
        )
        .with_target(
            prom(
                "clamp_min((max(tiendo_campaign_deadline_timestamp_seconds"
                '{campaign="$campaign"}) - time()) / 86400, 0)',
                "Số ngày còn lại",
                "B",
            )
        )
        .override_by_name("Hạn chót", [unit_of("dateTimeAsLocal")])
        .override_by_name("Số ngày còn lại", [decimals(1), unit_of("d")])
        .color_mode(common.BigValueColorMode.NONE)
        .grid_pos(g.at(6, 5))
    )
    d = d.with_panel(
        timeseries.Panel()
        .title("Kết quả thực hiện so với kế hoạch")
        .description(
            "Value of the level-1 unit (solid) against the plan line (dashed) and the target, "
            "per indicator."
        )
        .datasource(PROMETHEUS)
        .with_target(
            prom(f"max by (indicator) (tiendo_unit_value{{{CITY}}})", "{{indicator}} — thực hiện")
        )
        .with_target(
            prom(
                f"max by (indicator) (tiendo_unit_expected{{{CITY}}})",
                "{{indicator}} — kế hoạch",
                "B",
            )
        )
        .with_target(
            prom(
                f"max by (indicator) (tiendo_unit_target{{{CITY}}})",
                "{{indicator}} — chỉ tiêu",
                "C",
            )
        )
        .override_by_regexp(
            ".*kế hoạch",
            [
                DynamicConfigValue(
                    id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
                )
            ],
        )
        .override_by_regexp(
            ".*chỉ tiêu",
            [DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dot", "dash": [0, 10]})],
        )
        .grid_pos(g.at(16, 9))
    )
    d = d.with_panel(
        piechart.Panel()
        .title("Trạng thái các quận/huyện")
        .description("Level-2 units (districts) by status, all indicators together.")
        .datasource(PROMETHEUS)
        .with_target(
            prom(
                "sum by (status) (max by (unit, indicator, status) "
                '(tiendo_unit_status{campaign="$campaign", level="2"}))',
                "{{status}}",
                instant=True,
            )
        )
        .mappings([status_mapping()])
        .grid_pos(g.at(8, 9))
    )
    d = d.with_row(dashboard.Row("Đơn vị về đích").grid_pos(g.row()))
    d = d.with_panel(
        bargauge.Panel()
        .title("Tỷ lệ đơn vị về đích theo cấp")
        .description(
            "Share of the units of each level (with a positive target) that reached it, per "
            "indicator. Counted for every level, deeper than the per-unit metrics too."
        )
        .datasource(PROMETHEUS)
        .with_target(
            prom(
                'tiendo:units_done:ratio{campaign="$campaign"} * 100',
                "Cấp {{level}} — {{indicator}}",
                instant=True,
            )
        )
        .unit("percent")
        .min(0)
        .max(100)
        .thresholds(thresholds(*PCT_THRESHOLDS))
        .grid_pos(g.at(10, 8))
    )
    d = d.with_panel(
        timeseries.Panel()
        .title("Số đơn vị về đích theo cấp")
        .description("Units that reached their target, per level and indicator, over time.")
        .datasource(PROMETHEUS)
        .with_target(
            prom(
                'max by (level, indicator) (tiendo_units_done{campaign="$campaign"})',
                "Cấp {{level}} — {{indicator}}",
            )
        )
        .grid_pos(g.at(14, 8))
    )
    d = d.with_row(dashboard.Row("Hoạt động").grid_pos(g.row()))
    d = d.with_panel(
        timeseries.Panel()
        .title("Sự kiện tiếp nhận mỗi phút")
        .description("Events accepted by ingest per minute, per indicator (all campaigns).")
        .datasource(PROMETHEUS)
        .with_target(
            prom(
                "60 * sum by (indicator) "
                "(rate(tiendo_ingest_events_accepted_total[$__rate_interval]))",
                "{{indicator}}",
            )
        )
        .unit("short")
        .grid_pos(g.at(12, 8))
    )
    d = d.with_panel(
        timeseries.Panel()
        .title("Sự kiện mỗi phút theo quận/huyện (10 cao nhất)")
        .description(
            "Events counted per minute in each district's subtree (recording rule "
            "tiendo:unit_events:per_minute), the ten busiest."
        )
        .datasource(PROMETHEUS)
        .with_target(
            prom(
                "topk(10, max by (unit) "
                '(tiendo:unit_events:per_minute{campaign="$campaign", level="2"}))',
                "{{unit}}",
            )
        )
        .grid_pos(g.at(12, 8))
    )
    d = d.with_panel(
        stat.Panel()
        .title("Cảnh báo đang bật")
        .description("Alerts firing now, by rule (notifier).")
        .datasource(PROMETHEUS)
        .with_target(prom("max by (rule) (tiendo_notifier_alerts_firing)", "{{rule}}"))
        .thresholds(thresholds((None, "green"), (1.0, "red")))
        .grid_pos(g.at(24, 4))
    )
    return d


def leaderboard() -> Any:
    g = Grid()
    d = (
        base_dashboard(
            "tiendo-leaderboard",
            "Bảng xếp hạng — giao ban tuần",
            "The weekly briefing: every unit of the chosen level ranked by pct (ties: higher "
            "pace, then code), with pace and status; the units that must explain (the lowest "
            "$explain, and every unit behind or silent) are highlighted. Read from PostgreSQL, "
            "so it works for every level, below the per-unit metrics cut-off too.",
            "now-24h",
        )
        .with_variable(CAMPAIGN_SQL)
        .with_variable(INDICATOR_SQL)
        .with_variable(LEVEL_SQL)
        .with_variable(
            dashboard.CustomVariable("explain")
            .label("Số đơn vị cuối bảng phải giải trình")
            .description("How many of the lowest-ranked units must explain at the briefing.")
            .values("3,5,10,20")
            .current(VariableOption(text="5", value="5", selected=True))
        )
    )
    d = d.with_panel(
        stat.Panel()
        .title("Đơn vị về đích")
        .description("Units of the level that reached their target, of all units of the level.")
        .datasource(POSTGRES)
        .with_target(
            Sql(
                figures_sql("u.level = ${level}", indicator=True)
                + """
SELECT count(*) FILTER (WHERE status = 'done') AS "Về đích", count(*) AS "Tổng số đơn vị"
FROM judged"""
            )
        )
        .color_mode(common.BigValueColorMode.NONE)
        .grid_pos(g.at(8, 5))
    )
    d = d.with_panel(
        piechart.Panel()
        .title("Đơn vị theo trạng thái")
        .description("Units of the level by status.")
        .datasource(POSTGRES)
        .with_target(
            Sql(
                figures_sql("u.level = ${level}", indicator=True)
                + "\nSELECT status, count(*) AS units FROM judged GROUP BY status ORDER BY status"
            )
        )
        .reduce_options(
            common_builders.ReduceDataOptions()
            .values(True)
            .calcs(["lastNotNull"])
            .fields("/units/")
        )
        .mappings([status_mapping()])
        .grid_pos(g.at(8, 5))
    )
    d = d.with_panel(
        stat.Panel()
        .title("Phải giải trình")
        .description("Units that must explain at this briefing.")
        .datasource(POSTGRES)
        .with_target(
            Sql(
                RANKED_SQL
                + f"""
SELECT count(*) FILTER (WHERE {MUST_EXPLAIN}) AS "Phải giải trình"
FROM ranked r"""
            )
        )
        .thresholds(thresholds((None, "green"), (1.0, "red")))
        .grid_pos(g.at(8, 5))
    )
    d = d.with_panel(
        figures_table(
            "Xếp hạng đơn vị",
            "Every unit of the level for the indicator, ranked by pct. Pace = value / plan "
            "now; status by the campaign's rules (done, stale, behind, at_risk, on_track).",
            LEADERBOARD_SQL,
            g.at(24, 20),
        )
    )
    return d


UNIT_SCOPE = "u.code = ${unit:sqlstring}"
CHILD_SCOPE = "u.parent_code = ${unit:sqlstring}"


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
    own = (
        figures_sql(UNIT_SCOPE, indicator=False)
        + """
SELECT i.name AS indicator_name, j.value, j.target, round(j.pct::numeric, 2) AS pct,
       round(j.expected::numeric) AS expected, round(j.pace::numeric, 3) AS pace, j.status,
       j.projected_completion, j.last_event_at,
       (SELECT count(*) FILTER (WHERE cp.value >= cp.target) || ' / ' || count(*)
        FROM progress cp JOIN units cu ON cu.code = cp.unit
        WHERE cu.parent_code = j.code AND cp.campaign_id = j.campaign_id
          AND cp.indicator = j.indicator) AS children
FROM judged j
JOIN indicators i ON i.code = j.indicator
ORDER BY j.indicator
"""
    )
    d = d.with_panel(
        figures_table(
            "Hiện trạng theo chỉ tiêu",
            "The unit's figures now, per indicator (PostgreSQL, any level).",
            own,
            g.at(24, 6),
        )
    )
    unit_sel = 'campaign="$campaign", unit="$unit"'
    d = d.with_panel(
        timeseries.Panel()
        .title("Thực hiện so với kế hoạch")
        .description(
            "The unit's value (solid) against the plan (dashed), per indicator. Prometheus "
            "keeps these only for units down to the per-unit metrics level; for deeper units "
            "see the daily increments and the table above."
        )
        .datasource(PROMETHEUS)
        .with_target(
            prom(
                f"max by (indicator) (tiendo_unit_value{{{unit_sel}}})", "{{indicator}} — thực hiện"
            )
        )
        .with_target(
            prom(
                f"max by (indicator) (tiendo_unit_expected{{{unit_sel}}})",
                "{{indicator}} — kế hoạch",
                "B",
            )
        )
        .override_by_regexp(
            ".*kế hoạch",
            [
                DynamicConfigValue(
                    id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
                )
            ],
        )
        .grid_pos(g.at(12, 9))
    )
    d = d.with_panel(
        timeseries.Panel()
        .title("Số tăng thêm mỗi ngày")
        .description(
            "Counted increments per local day in the unit's subtree, per indicator "
            "(PostgreSQL, any level). Snapshot reports move the value, not these bars."
        )
        .datasource(POSTGRES)
        .with_target(
            Sql(
                """
SELECT (d.day::timestamp AT TIME ZONE c.timezone) AS "time", d.indicator AS metric,
       sum(d.increments) AS value
FROM campaigns c
JOIN daily_counts d ON d.campaign_id = c.id
JOIN units du ON du.code = d.unit
WHERE c.id = ${campaign:sqlstring}
  AND (du.code = ${unit:sqlstring} OR du.ancestors @> ARRAY[${unit:sqlstring}])
  AND d.day BETWEEN $__timeFrom()::date - 1 AND $__timeTo()::date + 1
GROUP BY 1, 2
ORDER BY 1, 2
""",
                "time_series",
            )
        )
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .grid_pos(g.at(12, 9))
    )
    children = (
        figures_sql(CHILD_SCOPE, indicator=False)
        + """
SELECT j.code, j.name, i.name AS indicator_name, j.value, j.target,
       round(j.pct::numeric, 2) AS pct, round(j.pace::numeric, 3) AS pace, j.status,
       j.last_event_at
FROM judged j
JOIN indicators i ON i.code = j.indicator
ORDER BY j.indicator, j.pct NULLS FIRST, j.code
"""
    )
    d = d.with_panel(
        figures_table(
            "Các đơn vị trực thuộc",
            "Direct children of the unit, per indicator, lowest pct first.",
            children,
            g.at(24, 12),
        )
    )
    d = d.with_panel(
        apply_overrides(
            table.Panel()
            .title("Cảnh báo của đơn vị")
            .description("The unit's alerts (notifier), newest first: rule, state, since when.")
            .datasource(POSTGRES)
            .with_target(
                Sql(
                    """
SELECT a.indicator, a.rule, a.state, a.since, a.fired_at, a.resolved_at, a.escalation_level
FROM alerts a
WHERE a.campaign_id = ${campaign:sqlstring} AND a.unit = ${unit:sqlstring}
ORDER BY a.since DESC
LIMIT 50
"""
                )
            ),
            [
                display("indicator", "Chỉ tiêu"),
                display("rule", "Quy tắc"),
                display("state", "Tình trạng"),
                display("since", "Từ lúc", unit_of("dateTimeAsLocal")),
                display("fired_at", "Bật lúc", unit_of("dateTimeAsLocal")),
                display("resolved_at", "Hết lúc", unit_of("dateTimeAsLocal")),
                display("escalation_level", "Cấp báo cáo lên"),
            ],
        ).grid_pos(g.at(24, 8))
    )
    return d


def pipeline() -> Any:
    g = Grid()
    d = base_dashboard(
        "tiendo-pipeline",
        "Sức khoẻ hệ thống",
        "Pipeline health: ingest rate, errors by reason and latency; consumer lag, apply "
        "rate, event freshness and dead letters; notification delivery and alerts.",
        "now-6h",
    )

    def series(title: str, description: str, unit: str, *targets: Any) -> Any:
        p = timeseries.Panel().title(title).description(description).datasource(PROMETHEUS)
        for t in targets:
            p = p.with_target(t)
        return p.unit(unit).grid_pos(g.at(8, 8))

    d = d.with_row(dashboard.Row("Tiếp nhận (ingest)").grid_pos(g.row()))
    d = d.with_panel(
        stat.Panel()
        .title("Dịch vụ hoạt động")
        .description("1 while Prometheus can scrape the service.")
        .datasource(PROMETHEUS)
        .with_target(prom('up{job=~"tiendo-.*"}', "{{job}}"))
        .thresholds(thresholds((None, "red"), (1.0, "green")))
        .grid_pos(g.at(16, 4))
    )
    d = d.with_panel(
        stat.Panel()
        .title("Kafka sẵn sàng")
        .description("1 while ingest's Kafka producer is connected.")
        .datasource(PROMETHEUS)
        .with_target(prom("min(tiendo_ingest_kafka_ready)", "Kafka"))
        .thresholds(thresholds((None, "red"), (1.0, "green")))
        .grid_pos(g.at(8, 4))
    )
    d = d.with_panel(
        series(
            "Sự kiện được nhận mỗi giây",
            "Events acknowledged by Kafka and answered 202, per second and indicator.",
            "short",
            prom(
                "sum by (indicator) (rate(tiendo_ingest_events_accepted_total[$__rate_interval]))",
                "{{indicator}}",
            ),
        )
    )
    d = d.with_panel(
        series(
            "Sự kiện bị từ chối theo lý do",
            "Refused events per second by reason (invalid, unauthorized, forbidden, "
            "body_too_large, malformed_json, malformed_protobuf, unsupported_media_type, "
            "rate_limited, tokens_unavailable, starting, kafka_unavailable).",
            "short",
            prom(
                "sum by (reason) (rate(tiendo_ingest_events_rejected_total[$__rate_interval]))",
                "{{reason}}",
            ),
        )
    )
    d = d.with_panel(
        series(
            "Thời gian phản hồi tiếp nhận",
            "Time to answer POST /v1/events, Kafka acknowledgement included: p50 and p99.",
            "s",
            prom(
                "histogram_quantile(0.5, sum by (le) "
                "(rate(tiendo_ingest_request_duration_seconds_bucket[$__rate_interval])))",
                "p50",
            ),
            prom("tiendo:ingest_request_duration_seconds:p99_5m", "p99 (5 phút)", "B"),
        )
    )
    d = d.with_panel(
        series(
            "Yêu cầu theo mã HTTP",
            "Event requests per second by HTTP status.",
            "reqps",
            prom(
                "sum by (status) (rate(tiendo_ingest_requests_total[$__rate_interval]))",
                "{{status}}",
            ),
        )
    )
    d = d.with_row(dashboard.Row("Tổng hợp (aggregator)").grid_pos(g.row()))
    d = d.with_panel(
        series(
            "Độ trễ tiêu thụ theo phân vùng",
            "Records of progress-events not yet applied, per partition (consumer lag).",
            "short",
            prom("max by (partition) (tiendo_aggregator_consumer_lag)", "phân vùng {{partition}}"),
        )
    )
    d = d.with_panel(
        series(
            "Sự kiện áp dụng và trùng lặp mỗi giây",
            "New events counted, and deliveries skipped because the event_id was applied.",
            "short",
            prom("sum(rate(tiendo_aggregator_events_applied_total[$__rate_interval]))", "áp dụng"),
            prom(
                "sum(rate(tiendo_aggregator_duplicates_skipped_total[$__rate_interval]))",
                "trùng lặp",
                "B",
            ),
        )
    )
    d = d.with_panel(
        series(
            "Độ tươi của số liệu",
            "From ingest's acceptance to the counter commit: p50 and p99 (freshness).",
            "s",
            prom(
                "histogram_quantile(0.5, sum by (le) "
                "(rate(tiendo_aggregator_event_freshness_seconds_bucket[$__rate_interval])))",
                "p50",
            ),
            prom("tiendo:aggregator_event_freshness_seconds:p99_5m", "p99 (5 phút)", "B"),
        )
    )
    d = d.with_panel(
        series(
            "Thời gian áp dụng một lô",
            "Time to apply one batch in one transaction: p99.",
            "s",
            prom(
                "histogram_quantile(0.99, sum by (le) "
                "(rate(tiendo_aggregator_batch_seconds_bucket[$__rate_interval])))",
                "p99",
            ),
        )
    )
    d = d.with_panel(
        stat.Panel()
        .title("Thư chết (dead letters)")
        .description(
            "Events that can never be applied (undecodable, unknown unit or indicator), sent "
            "to the dead-letter topic, by reason, since the aggregator started."
        )
        .datasource(PROMETHEUS)
        .with_target(prom("sum by (reason) (tiendo_aggregator_dead_letters_total)", "{{reason}}"))
        .thresholds(thresholds((None, "green"), (1.0, "red")))
        .grid_pos(g.at(8, 8))
    )
    d = d.with_panel(
        stat.Panel()
        .title("Tuổi số liệu theo đơn vị")
        .description(
            "Seconds since the per-unit metrics were recomputed (they refresh in the "
            "background every metrics_refresh_seconds)."
        )
        .datasource(PROMETHEUS)
        .with_target(
            prom("time() - max(tiendo_aggregator_unit_snapshot_timestamp_seconds)", "tuổi")
        )
        .unit("s")
        .thresholds(thresholds((None, "green"), (60.0, "orange"), (300.0, "red")))
        .grid_pos(g.at(8, 8))
    )
    d = d.with_panel(
        apply_overrides(
            table.Panel()
            .title("Thư chết gần nhất")
            .description("The latest dead letters recorded by the aggregator (PostgreSQL).")
            .datasource(POSTGRES)
            .with_target(
                Sql(
                    """
SELECT created_at, topic, partition, kafka_offset, event_id, reason
FROM dead_letters
ORDER BY created_at DESC
LIMIT 50
"""
                )
            ),
            [
                display("created_at", "Lúc", unit_of("dateTimeAsLocal")),
                display("topic", "Topic"),
                display("partition", "Phân vùng"),
                display("kafka_offset", "Offset"),
                display("event_id", "Mã sự kiện"),
                display("reason", "Lý do"),
            ],
        ).grid_pos(g.at(24, 8))
    )
    d = d.with_row(dashboard.Row("Cảnh báo và thông báo (notifier)").grid_pos(g.row()))
    d = d.with_panel(
        series(
            "Gửi thông báo theo kênh và kết quả",
            "Delivery attempts per second by channel and result (delivered, retry, failed).",
            "short",
            prom(
                "sum by (channel, result) "
                "(rate(tiendo_notifier_notifications_total[$__rate_interval]))",
                "{{channel}} — {{result}}",
            ),
        )
    )
    d = d.with_panel(
        series(
            "Cảnh báo đang bật theo quy tắc",
            "Alerts firing now, by rule.",
            "short",
            prom("max by (rule) (tiendo_notifier_alerts_firing)", "{{rule}}"),
        )
    )
    d = d.with_panel(
        series(
            "Đánh giá quy tắc mỗi giây",
            "Rule evaluations per second, by trigger (feed update or clock).",
            "short",
            prom(
                "sum by (trigger) (rate(tiendo_notifier_evaluations_total[$__rate_interval]))",
                "{{trigger}}",
            ),
        )
    )
    d = d.with_panel(
        apply_overrides(
            table.Panel()
            .title("Nhật ký gửi thông báo")
            .description("Notifications in the delivery log by channel and status (PostgreSQL).")
            .datasource(POSTGRES)
            .with_target(
                Sql(
                    """
SELECT channel, status, count(*) AS notifications, sum(attempts) AS attempts,
       max(created_at) AS latest
FROM notifications
GROUP BY channel, status
ORDER BY channel, status
"""
                )
            ),
            [
                display("channel", "Kênh"),
                display("status", "Trạng thái"),
                display("notifications", "Số thông báo"),
                display("attempts", "Số lần gửi"),
                display("latest", "Gần nhất", unit_of("dateTimeAsLocal")),
            ],
        ).grid_pos(g.at(24, 8))
    )
    return d


BOARDS = {
    "tiendo-overview": overview,
    "tiendo-leaderboard": leaderboard,
    "tiendo-unit": unit_board,
    "tiendo-pipeline": pipeline,
}


def render(name: str) -> str:
    """The provisioned JSON of one board, byte-for-byte what `make dashboards` writes."""
    board: dict[str, Any] = json.loads(json.dumps(BOARDS[name]().build(), cls=JSONEncoder))
    # Stable panel ids (links and alerts refer to panels by id).
    for number, panel in enumerate(board["panels"], start=1):
        panel["id"] = number
    return json.dumps(board, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def generate(out: Path = OUT) -> list[Path]:
    """Write every board into `out`; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in BOARDS:
        path = out / f"{name}.json"
        path.write_text(render(name), encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the JSON files")
    args = parser.parse_args()
    for path in generate(args.out):
        sys.stdout.write(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}\n")


if __name__ == "__main__":
    main()
