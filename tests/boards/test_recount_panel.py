"""The overview's *Đang tính lại số liệu* panel tells people watching that the figures are
frozen while a rebuild replays the topic (SPEC §5: "a recount in progress is shown as
such, never as a wrong number"): on top of the board, from the aggregator's recount gauges
(documented in docs/metrics.md), its answers checked by Prometheus's own engine on two
replicas that refresh at different moments. `test_dashboards.py` runs its queries against
the live services, where no rebuild runs (0, and 100 % replayed)."""

from pathlib import Path

import pytest

from services.aggregator.metrics import AggregatorMetrics
from tests.boards.grafana import boards, panel_texts, panels
from tests.boards.live import PROMTOOL, promtool_tests
from tests.boards.test_board_promql import AGGREGATORS, constant, expect, replicated
from tests.support.stack import REPO

OVERVIEW = "tiendo-overview"
TITLE = "Đang tính lại số liệu"
GAUGES = ("tiendo_aggregator_recount_in_progress", "tiendo_aggregator_recount_replayed_ratio")


def _panel() -> dict[str, object]:
    (found,) = [p for p in panels(boards()[OVERVIEW]) if p["title"] == TITLE]
    return found


def test_the_panel_is_on_top_of_the_overview_and_reads_documented_gauges() -> None:
    panel = _panel()
    assert panel["type"] == "stat"
    # above every figure it concerns, the whole width
    assert panel["gridPos"] == {"h": 3, "w": 24, "x": 0, "y": 0}
    assert all(p["gridPos"]["y"] >= 3 for p in panels(boards()[OVERVIEW]) if p["title"] != TITLE)
    # the gauges exist (the aggregator's registry exports them from start) and are
    # documented where the metrics are
    exported = {m.name for m in AggregatorMetrics().registry.collect()}
    catalogue = (REPO / "docs" / "metrics.md").read_text()
    texts = " ".join(panel_texts(OVERVIEW, TITLE))
    for gauge in GAUGES:
        assert gauge in texts
        assert gauge in exported
        assert f"`{gauge}`" in catalogue
    assert f"**{TITLE}**" in catalogue


@pytest.mark.skipif(
    PROMTOOL is None,
    reason="Debian's `promtool` is not installed (apt-get install prometheus); .ci/run "
    "installs it so CI always runs the board check",
)
def test_a_recount_seen_by_any_replica_is_shown_with_the_furthest_behind(
    tmp_path: Path,
) -> None:
    state, replayed = panel_texts(OVERVIEW, TITLE)

    def replica(instance: str, recounting: str, ratio: str) -> list[dict[str, str]]:
        return [
            *replicated(GAUGES[0], recounting, {}, (instance,)),
            *replicated(GAUGES[1], ratio, {}, (instance,)),
        ]

    a, b = AGGREGATORS
    promtool_tests(
        tmp_path,
        [
            # no rebuild: not recounting, everything replayed
            {
                "interval": "1m",
                "input_series": replica(a, constant(0), constant(1))
                + replica(b, constant(0), constant(1)),
                "promql_expr_test": [
                    expect(state, {"{}": 0}),
                    expect(replayed, {"{}": 100}),
                ],
            },
            # a rebuild: replica a has refreshed since it began (40 % replayed), b not yet
            # (its last look saw none): shown as in progress, at a's 40 %
            {
                "interval": "1m",
                "input_series": replica(a, constant(1), constant(0.4))
                + replica(b, constant(0), constant(1)),
                "promql_expr_test": [
                    expect(state, {"{}": 1}),
                    expect(replayed, {"{}": 40}),
                ],
            },
        ],
    )
