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
leaderboard, the unit's own figures and children) is read from PostgreSQL: from
`board_figures`, the figures tiendo/board judged and the aggregator stored, never computed
again here (docs/metrics.md, "Stored figures").
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


# -- queries ------------------------------------------------------------------------------
class SqlQuery(cogvariants.Dataquery):
    """A raw-SQL query of Grafana's PostgreSQL datasource (the SDK has no builder for it)."""

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


# -- panel builders shared by every board -------------------------------------------------
def panel(kind: Any, title: str, description: str, pos: GridPos, *targets: Any) -> Any:
    """A panel of `kind` (a builder) with its title, description, place and queries; the
    datasource is the first query's."""
    source = POSTGRES if isinstance(targets[0], Sql) else PROMETHEUS
    built = kind.title(title).description(description).datasource(source).grid_pos(pos)
    for target in targets:
        built = built.with_target(target)
    return built


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in steps])
    )


PACE_THRESHOLDS = ((None, "red"), (0.9, "orange"), (1.0, "green"))
PCT_THRESHOLDS = ((None, "red"), (50.0, "orange"), (100.0, "green"))
ALARM = thresholds((None, "green"), (1.0, "red"))  # any is too many
UP = thresholds((None, "red"), (1.0, "green"))


def status_mapping() -> ValueMap:
    return ValueMap(
        options={
            key: ValueMappingResult(text=text, color=color, index=i)
            for i, (key, (text, color)) in enumerate(STATUS_TEXT.items())
        }
    )


def display(name: str, title: str, *extra: DynamicConfigValue) -> tuple[str, list[Any]]:
    return name, [DynamicConfigValue(id_val="displayName", value=title), *extra]


def cells(kind: str) -> DynamicConfigValue:
    """Colour a column's cells: `color-text` or `color-background`."""
    value = {"type": kind, "mode": "basic"} if kind == "color-background" else {"type": kind}
    return DynamicConfigValue(id_val="custom.cellOptions", value=value)


def unit_of(unit: str) -> DynamicConfigValue:
    return DynamicConfigValue(id_val="unit", value=unit)


def decimals(n: int) -> DynamicConfigValue:
    return DynamicConfigValue(id_val="decimals", value=n)


def colored_by(steps: tuple[tuple[float | None, str], ...]) -> list[DynamicConfigValue]:
    return [
        DynamicConfigValue(id_val="thresholds", value=thresholds(*steps).build()),
        cells("color-text"),
    ]


def line_style(fill: str, dash: list[int]) -> list[DynamicConfigValue]:
    return [DynamicConfigValue(id_val="custom.lineStyle", value={"fill": fill, "dash": dash})]


def sql_table(
    title: str, description: str, pos: GridPos, query: str, columns: list[tuple[str, list[Any]]]
) -> Any:
    """A filterable table of one SQL query, its columns named and formatted."""
    built = panel(table.Panel(), title, description, pos, Sql(query)).filterable(True)
    for name, props in columns:
        built = built.override_by_name(name, props)
    return built


def series(title: str, description: str, unit: str, pos: GridPos, *targets: Any) -> Any:
    return panel(timeseries.Panel(), title, description, pos, *targets).unit(unit)


def against_plan(title: str, description: str, selector: str, pos: GridPos, *, target: bool) -> Any:
    """Value (solid) against the plan (dashed), and the target (dotted) if `target`."""
    lines = [("tiendo_unit_value", "thực hiện"), ("tiendo_unit_expected", "kế hoạch")]
    lines += [("tiendo_unit_target", "chỉ tiêu")] if target else []
    queries = [
        prom(f"max by (indicator) ({metric}{{{selector}}})", f"{{{{indicator}}}} — {name}", ref)
        for (metric, name), ref in zip(lines, "ABC", strict=False)
    ]
    built = series(title, description, "short", pos, *queries)
    built = built.override_by_regexp(".*kế hoạch", line_style("dash", [10, 10]))
    return built.override_by_regexp(".*chỉ tiêu", line_style("dot", [0, 10])) if target else built


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
CAMPAIGN_PROM = (
    dashboard.QueryVariable("campaign")
    .label("Đợt cao điểm")
    .description("The campaign, as exported by the aggregator.")
    .datasource(PROMETHEUS)
    .query("label_values(tiendo_campaign_deadline_timestamp_seconds, campaign)")
    .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
    .sort(VariableSort.ALPHABETICAL_ASC)
)


# -- the stored figures (board_figures: judged by tiendo/board, stored by the aggregator) --
def figures(where: str) -> str:
    """`f`: the stored figures of the chosen campaign where `where` holds, with the size of
    their leaderboard (`ranked_units`)."""
    return f"""
WITH f AS (
    SELECT *, count(*) OVER (PARTITION BY indicator, level) AS ranked_units
    FROM board_figures
    WHERE campaign_id = ${{campaign:sqlstring}} AND {where}
)"""


OF_LEVEL = figures("level = ${level} AND indicator = ${indicator:sqlstring}")
# The briefing's laggards: the lowest `explain` of the ranking, and every unit behind or
# silent (as the notifier's bottom_rank, behind and stale rules call them).
MUST_EXPLAIN = "(f.rank > f.ranked_units - ${explain} OR f.status IN ('behind', 'stale'))"
SHOWN = """f.value, f.target, round(f.pct::numeric, 2) AS pct,
       round(f.expected::numeric) AS expected, round(f.pace::numeric, 3) AS pace, f.status,
       f.projected_completion, f.last_event_at"""

LEADERBOARD_SQL = f"""{OF_LEVEL}
SELECT f.rank, f.unit AS code, f.unit_name AS name, par.name AS parent, {SHOWN},
       CASE WHEN {MUST_EXPLAIN} THEN 'Phải giải trình' ELSE '' END AS must_explain
FROM f
LEFT JOIN units par ON par.code = f.parent_code
ORDER BY f.rank
"""

FIGURE_COLUMNS = [
    display("rank", "Hạng", DynamicConfigValue(id_val="custom.width", value=60)),
    display("code", "Mã"),
    display("name", "Đơn vị"),
    display("parent", "Trực thuộc"),
    display("indicator_name", "Chỉ tiêu"),
    display("value", "Thực hiện"),
    display("target", "Chỉ tiêu"),
    display("pct", "Tỷ lệ (%)", *colored_by(PCT_THRESHOLDS)),
    display("expected", "Kế hoạch đến nay"),
    display("pace", "Tiến độ so với kế hoạch", *colored_by(PACE_THRESHOLDS)),
    display(
        "status",
        "Trạng thái",
        DynamicConfigValue(id_val="mappings", value=[status_mapping()]),
        cells("color-background"),
    ),
    display("projected_completion", "Dự kiến về đích", unit_of("dateTimeAsLocal")),
    display("last_event_at", "Báo cáo gần nhất", unit_of("dateTimeFromNow")),
    display("children", "Đơn vị trực thuộc về đích"),
    display(
        "must_explain",
        "Phải giải trình",
        DynamicConfigValue(
            id_val="mappings",
            value=[ValueMap(options={"Phải giải trình": ValueMappingResult(color="red", index=0)})],
        ),
        cells("color-background"),
    ),
]


# -- the boards ---------------------------------------------------------------------------
def assemble(board: Any, *items: Any) -> Any:
    """The board with its rows and panels, in order (a row holds the panels after it)."""
    for item in items:
        board = board.with_row(item) if isinstance(item, dashboard.Row) else board.with_panel(item)
    return board


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
            "Trạng thái các quận/huyện",
            "Level-2 units (districts) by status, all indicators together.",
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
            "Sự kiện mỗi phút theo quận/huyện (10 cao nhất)",
            "Events counted per minute in each district's subtree (recording rule "
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
    done = """
SELECT count(*) FILTER (WHERE f.status = 'done') AS "Về đích", count(*) AS "Tổng số đơn vị"
FROM f"""
    must_explain = f'\nSELECT count(*) FILTER (WHERE {MUST_EXPLAIN}) AS "Phải giải trình" FROM f'
    return assemble(
        d,
        panel(
            stat.Panel(),
            "Đơn vị về đích",
            "Units of the level that reached their target, of all units of the level.",
            g.at(8, 5),
            Sql(OF_LEVEL + done),
        ).color_mode(common.BigValueColorMode.NONE),
        panel(
            piechart.Panel(),
            "Đơn vị theo trạng thái",
            "Units of the level by status.",
            g.at(8, 5),
            Sql(OF_LEVEL + "\nSELECT status, count(*) AS units FROM f GROUP BY status ORDER BY 1"),
        )
        .reduce_options(
            common_builders.ReduceDataOptions()
            .values(True)
            .calcs(["lastNotNull"])
            .fields("/units/")
        )
        .mappings([status_mapping()]),
        panel(
            stat.Panel(),
            "Phải giải trình",
            "Units that must explain at this briefing.",
            g.at(8, 5),
            Sql(OF_LEVEL + must_explain),
        ).thresholds(ALARM),
        sql_table(
            "Xếp hạng đơn vị",
            "Every unit of the level for the indicator, ranked by pct. Pace = value / plan "
            "now; status by the campaign's rules (done, stale, behind, at_risk, on_track).",
            g.at(24, 20),
            LEADERBOARD_SQL,
            FIGURE_COLUMNS,
        ),
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
       sum(d.increments) AS value
FROM campaigns c
JOIN daily_counts d ON d.campaign_id = c.id
JOIN units du ON du.code = d.unit
WHERE c.id = ${campaign:sqlstring}
  AND (du.code = ${unit:sqlstring} OR du.ancestors @> ARRAY[${unit:sqlstring}])
  AND d.day BETWEEN $__timeFrom()::date - 1 AND $__timeTo()::date + 1
GROUP BY 1, 2
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
            g.at(8, 8),
            prom("sum by (reason) (tiendo_aggregator_dead_letters_total)", "{{reason}}"),
        ).thresholds(ALARM),
        panel(
            stat.Panel(),
            "Tuổi số liệu theo đơn vị",
            "Seconds since the per-unit metrics and the boards' stored figures were "
            "recomputed (they refresh in the background every metrics_refresh_seconds).",
            g.at(8, 8),
            prom("time() - max(tiendo_aggregator_unit_snapshot_timestamp_seconds)", "tuổi"),
        )
        .unit("s")
        .thresholds(thresholds((None, "green"), (60.0, "orange"), (300.0, "red"))),
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
            "Alerts firing now, by rule.",
            "short",
            prom("max by (rule) (tiendo_notifier_alerts_firing)", "{{rule}}"),
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
    for number, built in enumerate(board["panels"], start=1):
        built["id"] = number
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
