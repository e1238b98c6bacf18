"""Tổng quan đợt cao điểm: the campaign overview (Prometheus)."""

from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import bargauge, dashboard, piechart, stat
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DynamicConfigValue,
    GridPos,
    ValueMap,
    ValueMappingResult,
)

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
    per_unit,
    prom,
    series,
    status_mapping,
    summed,
    thresholds,
    unit_of,
)

# While a rebuild replays the topic (SPEC §5: "a recount in progress is shown as such,
# never as a wrong number") every per-unit figure below keeps its value from before it.
TITLE = "Đang tính lại số liệu"
RECOUNTING, REPLAYED = "Đang tính lại", "Đã phát lại"
RECOUNT_HEIGHT = 3


@dataclass(frozen=True)
class OnTop:
    """The overview as `board` builds it, with the recount panel moved on top: the SDK's
    `with_panel` reads a position of (0, 0) as none and places the panel after the one
    before it."""

    board: Any

    def build(self) -> Any:
        built = self.board.build()
        (recount,) = [p for p in built.panels if getattr(p, "title", None) == TITLE]
        recount.grid_pos = GridPos(h=RECOUNT_HEIGHT, w=24, x=0, y=0)
        return built


def recount_panel(pos: GridPos) -> Any:
    """Whether a rebuild is replaying the events topic, and how far: the board's figures are
    then frozen at the last refresh before it, which people watching must be told."""
    # no campaign label: one rebuild recounts every campaign. Any replica seeing it is
    # enough (max), and the one furthest behind says how far (min); every replica reads
    # the same database, so they differ only by their refresh moments
    state = ValueMap(
        options={
            "0": ValueMappingResult(text="Không", color="green", index=0),
            "1": ValueMappingResult(text="Có — số liệu tạm dừng", color="orange", index=1),
        }
    )
    return (
        panel(
            stat.Panel(),
            TITLE,
            "Recount in progress: Có (yes) while `tiendo aggregator rebuild` replays the "
            "events topic (tiendo_aggregator_recount_in_progress, any aggregator replica), "
            "with the share of its records replayed so far "
            "(tiendo_aggregator_recount_replayed_ratio, 100 % when none runs). Meanwhile "
            "the counters hold part of the events, so every figure on this board keeps its "
            "value from the aggregator's last refresh before the rebuild (frozen, not "
            "wrong), the read API answers 503 and the notifier judges nothing; figures move "
            "again when it ends. No data: no aggregator is scraped (as when one rebuilds "
            "with the aggregators stopped), so whether one runs is unknown.",
            pos,
            prom("max(tiendo_aggregator_recount_in_progress)", RECOUNTING),
            prom("100 * min(tiendo_aggregator_recount_replayed_ratio)", REPLAYED, "B"),
        )
        # the mapping on the state only: 0 % or 1 % replayed is no "Không" or "Có"
        .override_by_name(RECOUNTING, [DynamicConfigValue(id_val="mappings", value=[state])])
        .override_by_name(
            REPLAYED,
            [
                unit_of("percent"),
                decimals(0),
                DynamicConfigValue(
                    id_val="thresholds",
                    value=thresholds((None, "orange"), (100.0, "green")).build(),
                ),
            ],
        )
        .thresholds(thresholds((None, "green"), (1.0, "orange")))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
    )


def overview() -> Any:
    g = Grid(y=RECOUNT_HEIGHT)  # below the recount panel
    d = base_dashboard(
        "tiendo-overview",
        "Tổng quan đợt cao điểm",
        "Campaign overview: the city/province per indicator against the plan, projected "
        "completion, units that reached their target per level, event rate and alerts.",
        "now-7d",
    ).with_variable(CAMPAIGN_PROM)

    # Level 1 is one city/province, or a national tree's provinces: figures of the level are
    # its units' summed (pct and pace from the sums), each unit counted once across replicas.
    value, target, expected = (
        summed(f"tiendo_unit_{m}", CITY) for m in ("value", "target", "expected")
    )
    projected = per_unit("tiendo_unit_projected_completion_timestamp_seconds", CITY)
    not_done = per_unit("tiendo_unit_status", f'{CITY}, status="done"') + " == 0"
    # The last level-1 unit's projection, and none while a unit that is not done has none
    # (it is not moving: the level never completes at these rates); one city: its own.
    last_projected = (
        f"(max by (indicator) ({projected}) and on (indicator) "
        f"(count by (indicator) ({projected}) == count by (indicator) ({not_done})))"
    )

    deadline = 'max(tiendo_campaign_deadline_timestamp_seconds{campaign="$campaign"})'
    board = assemble(
        d,
        dashboard.Row("Toàn thành phố / tỉnh").grid_pos(g.row()),
        panel(
            stat.Panel(),
            "Tỷ lệ hoàn thành",
            "Value of level 1 over its target, per indicator: the city/province's own, or "
            "in a national tree (provinces at level 1) the provinces' values summed over "
            "their targets summed.",
            g.at(6, 5),
            prom(f"100 * {value} / ({target} > 0)", "{{indicator}}"),
        )
        .unit("percent")
        .decimals(1)
        .thresholds(thresholds(*PCT_THRESHOLDS)),
        panel(
            stat.Panel(),
            "Tiến độ so với kế hoạch",
            "Pace = value / expected by the plan now (1 = exactly on plan; below the "
            "campaign's threshold, 0.9 by default, the unit is behind), of level 1: the "
            "city/province's own, or the provinces' values summed over their plans summed "
            "(no value while the plan expects nothing yet).",
            g.at(6, 5),
            prom(f"{value} / ({expected} > 0)", "{{indicator}}"),
        )
        .decimals(2)
        .thresholds(thresholds(*PACE_THRESHOLDS)),
        panel(
            stat.Panel(),
            "Dự kiến về đích",
            "When level 1 reaches its target at the 7-day run rates, per indicator: the "
            "city/province's projection, or in a national tree the last province's (no "
            "value: already done, or a unit not done made no progress in the last 7 days).",
            g.at(6, 5),
            prom(f"{last_projected} * 1000", "{{indicator}}"),
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
            "Value of level 1 (solid) against the plan line (dashed) and the target, per "
            "indicator (in a national tree the provinces' summed).",
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
            "Events counted per minute in each level-2 unit's subtree, all indicators "
            "together (recording rule tiendo:unit_events:per_minute), the ten busiest: the "
            "rise of today's count over 5 minutes, never below 0 (a withdrawal is no "
            "activity; for 5 minutes after local midnight, when the count restarts, it "
            "shows 0).",
            "short",
            g.at(12, 8),
            # the rule has removed the replicas' copies already: a unit's indicators add up
            prom(
                "topk(10, sum by (unit) "
                '(tiendo:unit_events:per_minute{campaign="$campaign", level="2"}))',
                "{{unit}}",
            ),
        ),
        panel(
            stat.Panel(),
            "Cảnh báo đang bật",
            "The campaign's alerts firing now, by rule (notifier).",
            g.at(24, 4),
            # every notifier replica counts the same alerts table: max, not sum
            prom('max by (rule) (tiendo_notifier_alerts_firing{campaign="$campaign"})', "{{rule}}"),
        ).thresholds(ALARM),
        # on top, above every figure it concerns (Grafana lays panels out by position), yet
        # listed last: `render` numbers panels in order, and the others keep their ids
        recount_panel(GridPos(h=RECOUNT_HEIGHT, w=24)),
    )
    return OnTop(board)
