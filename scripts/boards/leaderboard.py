"""Bảng xếp hạng — giao ban tuần: the weekly briefing's leaderboard (PostgreSQL)."""

from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, piechart, stat
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import VariableOption

from scripts.boards.kit import (
    ALARM,
    CAMPAIGN_SQL,
    FIGURE_COLUMNS,
    INDICATOR_SQL,
    LEADERBOARD_SQL,
    LEVEL_SQL,
    MUST_EXPLAIN,
    OF_LEVEL,
    Grid,
    Sql,
    assemble,
    base_dashboard,
    panel,
    sql_table,
    status_mapping,
)


def leaderboard() -> Any:
    g = Grid()
    d = (
        base_dashboard(
            "tiendo-leaderboard",
            "Bảng xếp hạng — giao ban tuần",
            "The weekly briefing: every unit of the chosen level ranked by pct (ties: higher "
            "pace, then code), with pace and status; the units that must explain (those of the "
            "lowest $explain that have not reached their target, and every unit behind or "
            "silent) are highlighted. Read from PostgreSQL, "
            "so it works for every level, below the per-unit metrics cut-off too.",
            "now-24h",
        )
        .with_variable(CAMPAIGN_SQL)
        .with_variable(INDICATOR_SQL)
        .with_variable(LEVEL_SQL)
        .with_variable(
            dashboard.CustomVariable("explain")
            .label("Số đơn vị cuối bảng phải giải trình")
            .description(
                "How many of the lowest-ranked units must explain at the briefing (a unit "
                "that reached its target never does, as the notifier's bottom_rank rule)."
            )
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
            "Units that must explain at this briefing: those of the lowest-ranked N that have "
            "not reached their target, and every unit behind or silent.",
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
