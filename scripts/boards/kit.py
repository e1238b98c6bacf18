"""The panel kit every board is built from: datasources, the SQL query variant, panel,
threshold and field-override builders, the template variables, and the stored-figures SQL
the PostgreSQL panels share."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from grafana_foundation_sdk.builders import (
    dashboard,
    prometheus,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
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
    VariableRefresh,
    VariableSort,
)

ROOT = Path(__file__).resolve().parents[2]  # the repository
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


def per_unit(metric: str, selector: str) -> str:
    """`metric` of each unit `selector` picks, per indicator, once: every aggregator replica
    exports the same snapshot, so across instances the copies are one (max), never added."""
    return f"max by (unit, indicator) ({metric}{{{selector}}})"


def summed(metric: str, selector: str) -> str:
    """`metric` of the units `selector` picks, added up per indicator (each unit once): a
    level of several units (a national tree's provinces) is their sum, not its best one."""
    return f"sum by (indicator) ({per_unit(metric, selector)})"


def against_plan(title: str, description: str, selector: str, pos: GridPos, *, target: bool) -> Any:
    """Value (solid) against the plan (dashed), and the target (dotted) if `target`, of the
    units `selector` picks, summed."""
    lines = [("tiendo_unit_value", "thực hiện"), ("tiendo_unit_expected", "kế hoạch")]
    lines += [("tiendo_unit_target", "chỉ tiêu")] if target else []
    queries = [
        prom(summed(metric, selector), f"{{{{indicator}}}} — {name}", ref)
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
    "Level of the unit tree (data, not fixed): since 1 July 2025 1 city/province, 2 commune; "
    "older trees 1 city/province, 2 district, 3 ward/commune.",
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
# `tiendo.board.figures.bottom` over the stored figures: the lowest `explain` of the
# ranking, leaving out units that reached their target (value ≥ target, `is_done` as
# `bottom` asks it; not the stored float pct, which rounds to 100 just short of a large
# target; a done unit ranks low only when the level is nearly all done, and is never
# called a laggard by the notifier's bottom_rank rule). Rank and ranked_units are the
# ranking `bottom` is given: `board_figures` holds the units with a target, ranked by
# `figures.ranked`. tests/boards/test_must_explain.py holds this equal to `bottom`.
BOTTOM = "(f.rank > f.ranked_units - ${explain} AND f.value < f.target)"
# The briefing's laggards: the bottom ones, and every unit behind or silent (as the
# notifier's bottom_rank, behind and stale rules call them).
MUST_EXPLAIN = f"({BOTTOM} OR f.status IN ('behind', 'stale'))"
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
