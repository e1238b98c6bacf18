"""The boards' PromQL says what the panels promise, on series written to tell right from
wrong: two replicas of every service exporting the same figures (taken once, never added),
several indicators of a unit (added, never one of them), several campaigns (the chosen one
only), and level 1 as one city or as a national tree's provinces (the country: values and
targets summed, pct and pace from the sums, never its best province). Evaluated by
Prometheus's own engine (`promtool test rules`) with the repository's recording rules, on
the queries as provisioned; `test_dashboards.py` runs them against the live services."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.boards.grafana import interpolate, panel_query, panel_texts
from tests.boards.live import PROMTOOL, promtool_tests
from tiendo.pace import pct_and_pace

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="Debian's `promtool` is not installed (apt-get install prometheus); .ci/run "
    "installs it so CI always runs the board check",
)
pytestmark = needs_promtool

OVERVIEW = "tiendo-overview"
STEPS = 20  # one sample a minute
AT = "10m"
AGGREGATORS = ("a:8002", "b:8002")
NOTIFIERS = ("a:8003", "b:8003")


def labels(**values: str) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in values.items()) + "}"


def replicated(
    metric: str, values: str, label: Mapping[str, str], instances: tuple[str, ...] = AGGREGATORS
) -> list[dict[str, str]]:
    """The same series from each replica, as every replica exports the same snapshot."""
    job = "tiendo-notifier" if instances == NOTIFIERS else "tiendo-aggregator"
    return [
        {"series": metric + labels(job=job, instance=i, **label), "values": values}
        for i in instances
    ]


def constant(x: float) -> str:
    return f"{x!r}x{STEPS}"


def expect(expr: str, samples: Mapping[str, float], at: str = AT) -> dict[str, Any]:
    return {
        "expr": expr,
        "eval_time": at,
        "exp_samples": [{"labels": k, "value": v} for k, v in samples.items()],
    }


def query(title: str, campaign: str, index: int = 0) -> str:
    now = datetime.now(UTC)
    text = panel_texts(OVERVIEW, title)[index]
    return interpolate(text, sql=False, start=now, end=now, values={"campaign": campaign})


@dataclass(frozen=True)
class Figures:
    """One (unit, indicator) as the aggregator exports it."""

    unit: str
    indicator: str
    value: int
    target: int
    expected: float
    projected: int | None  # epoch seconds; None: done, or not moving
    level: str = "1"

    @property
    def done(self) -> bool:
        return self.value >= self.target

    def series(self, campaign: str) -> list[dict[str, str]]:
        key = {"campaign": campaign, "unit": self.unit, "level": self.level}
        key["indicator"] = self.indicator
        pct, pace = pct_and_pace(self.value, self.target, self.expected)
        out = []
        for name, x in [
            ("value", self.value),
            ("target", self.target),
            ("expected", self.expected),
            ("pct", pct),
            ("pace", pace),
            ("projected_completion_timestamp_seconds", self.projected),
        ]:
            if x is not None:
                out += replicated(f"tiendo_unit_{name}", constant(x), key)
        status = "done" if self.done else "on_track"
        for s in ("done", "on_track"):
            is_it = constant(float(s == status))
            out += replicated("tiendo_unit_status", is_it, {**key, "status": s})
        return out


def by_indicator(x: Mapping[str, float]) -> dict[str, float]:
    return {labels(indicator=k): v for k, v in x.items()}


CCCD, EID, PID = "cccd_collected", "eid_activated_l2", "pid_verified"
T0 = 1_750_000_000  # a projected completion, epoch seconds


def test_level_one_of_a_national_tree_is_its_provinces_summed(tmp_path: Path) -> None:
    national = [
        # two provinces: neither the best nor the first of them is the country
        Figures("01", CCCD, 600, 1000, 500.0, T0),
        Figures("79", CCCD, 300, 2000, 800.0, T0 + 86_400),
        Figures("01", EID, 1200, 1000, 500.0, None),  # done
        Figures("79", EID, 1000, 2000, 800.0, T0 + 2 * 86_400),
        Figures("01", PID, 100, 1000, 500.0, T0),
        Figures("79", PID, 0, 2000, 800.0, None),  # not moving: the country never ends
        # a district below, and another campaign: neither is the campaign's level 1
        Figures("001", CCCD, 99_999, 100_000, 99_999.0, T0 - 1, level="2"),
    ]
    other = [Figures("01", i, 9_000, 9_000, 9_000.0, None) for i in (CCCD, EID, PID)]
    value = {
        i: sum(f.value for f in national if f.indicator == i and f.level == "1")
        for i in (CCCD, EID, PID)
    }
    target = {
        i: sum(f.target for f in national if f.indicator == i and f.level == "1")
        for i in (CCCD, EID, PID)
    }
    planned = {
        i: sum(f.expected for f in national if f.indicator == i and f.level == "1")
        for i in (CCCD, EID, PID)
    }
    assert value == {CCCD: 900, EID: 2200, PID: 100}
    against_plan = "Kết quả thực hiện so với kế hoạch"
    promtool_tests(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [s for f in national for s in f.series("c1")]
                + [s for f in other for s in f.series("c2")],
                "promql_expr_test": [
                    expect(
                        query("Tỷ lệ hoàn thành", "c1"),
                        by_indicator({i: 100.0 * value[i] / target[i] for i in value}),
                    ),
                    expect(
                        query("Tiến độ so với kế hoạch", "c1"),
                        by_indicator({i: value[i] / planned[i] for i in value}),
                    ),
                    # the last province's projection; none while one not done has none
                    expect(
                        query("Dự kiến về đích", "c1"),
                        by_indicator(
                            {CCCD: (T0 + 86_400) * 1000.0, EID: (T0 + 2 * 86_400) * 1000.0}
                        ),
                    ),
                    expect(query(against_plan, "c1", 0), by_indicator(value)),
                    expect(query(against_plan, "c1", 1), by_indicator(planned)),
                    expect(query(against_plan, "c1", 2), by_indicator(target)),
                ],
            }
        ],
    )


def test_level_one_of_a_city_is_the_citys_own_figures(tmp_path: Path) -> None:
    city = [
        Figures("01", CCCD, 777, 1300, 912.5, T0),
        Figures("01", EID, 1300, 1300, 912.5, None),  # done
    ]
    own = {f.indicator: pct_and_pace(f.value, f.target, f.expected) for f in city}
    promtool_tests(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [s for f in city for s in f.series("hn")],
                "promql_expr_test": [
                    # exactly the figures the aggregator judged for the city
                    expect(
                        query("Tỷ lệ hoàn thành", "hn"),
                        by_indicator({i: pct for i, (pct, _) in own.items() if pct is not None}),
                    ),
                    expect(
                        query("Tiến độ so với kế hoạch", "hn"),
                        by_indicator({i: pace for i, (_, pace) in own.items() if pace is not None}),
                    ),
                    expect(query("Dự kiến về đích", "hn"), by_indicator({CCCD: T0 * 1000.0})),
                ],
            }
        ],
    )


EVENTS_TODAY = "tiendo_unit_events_today"
BUSIEST = "Sự kiện mỗi phút theo đơn vị cấp 2 (10 cao nhất)"


def test_busiest_units_add_up_their_indicators(tmp_path: Path) -> None:
    per_minute = {("001", CCCD): 10, ("001", EID): 10, ("002", CCCD): 15, ("003", EID): 5}
    series = [
        s
        for (unit, indicator), n in per_minute.items()
        for s in replicated(
            EVENTS_TODAY,
            f"0+{n}x{STEPS}",
            {"campaign": "c1", "unit": unit, "level": "2", "indicator": indicator},
        )
    ]
    # another campaign busier than all of them
    series += replicated(
        EVENTS_TODAY,
        f"0+100x{STEPS}",
        {"campaign": "c2", "unit": "001", "level": "2", "indicator": CCCD},
    )
    busiest = query(BUSIEST, "c1")
    promtool_tests(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    # (rate's float steps rounded off: the sums are what is checked)
                    expect(
                        f"round({busiest}, 0.001)",
                        {labels(unit="001"): 20, labels(unit="002"): 15, labels(unit="003"): 5},
                    )
                ],
            }
        ],
    )


def test_events_per_minute_do_not_spike_when_todays_count_goes_down(tmp_path: Path) -> None:
    """Today's count is no counter: a withdrawn subject winner leaves its day (001: 3000
    for 10 minutes, then 2999), and local midnight restarts it (002: 10 a minute up to
    3000, then from 0 again). Read as a counter, 001's decrease is a reset: ~600 a minute
    out of nothing."""
    unit = {"campaign": "c1", "level": "2", "indicator": CCCD}
    series = replicated(EVENTS_TODAY, "3000x10 2999x10", {**unit, "unit": "001"})
    series += replicated(EVENTS_TODAY, "2900+10x10 0+10x10", {**unit, "unit": "002"})
    busiest = f"round({query(BUSIEST, 'c1')}, 0.001)"
    rule = "tiendo:unit_events:per_minute"
    at_rule = {rule + labels(**unit, unit=u): v for u, v in (("001", 0), ("002", 0))}
    promtool_tests(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    # before: 001 still, 002 at 10 a minute
                    expect(busiest, {labels(unit="001"): 0, labels(unit="002"): 10}, "10m"),
                    # 001 one fewer, 002 across its midnight: no spike, and never below 0
                    expect(busiest, {labels(unit="001"): 0, labels(unit="002"): 0}, "11m"),
                    expect(rule, at_rule, "13m"),
                    expect(busiest, {labels(unit="001"): 0, labels(unit="002"): 0}, "15m"),
                    # once the window is all of the new day, 002's rate is back
                    expect(busiest, {labels(unit="001"): 0, labels(unit="002"): 10}, "16m"),
                    expect(busiest, {labels(unit="001"): 0, labels(unit="002"): 10}, "20m"),
                ],
            }
        ],
    )


def test_alerts_firing_are_the_chosen_campaigns_once_across_replicas(tmp_path: Path) -> None:
    firing = {
        ("c1", "behind"): 3,
        ("c1", "stale"): 1,
        ("c1", "at_risk"): 0,
        ("c1", "bottom_rank"): 0,
        ("c2", "behind"): 7,
        ("c2", "stale"): 0,
        ("c2", "at_risk"): 2,
        ("c2", "bottom_rank"): 0,
    }
    series = [
        s
        for (campaign, rule), n in firing.items()
        for s in replicated(
            "tiendo_notifier_alerts_firing",
            constant(n),
            {"campaign": campaign, "rule": rule},
            NOTIFIERS,
        )
    ]
    rules = sorted({r for _, r in firing})
    promtool_tests(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    expect(
                        query("Cảnh báo đang bật", "c1"),
                        {labels(rule=r): firing["c1", r] for r in rules},
                    ),
                    expect(
                        "tiendo:notifier_alerts_firing:max",
                        {
                            "tiendo:notifier_alerts_firing:max" + labels(campaign=c, rule=r): n
                            for (c, r), n in firing.items()
                        },
                    ),
                    # the pipeline board: every campaign's together
                    expect(
                        panel_query("tiendo-pipeline", "Cảnh báo đang bật theo quy tắc"),
                        {labels(rule=r): firing["c1", r] + firing["c2", r] for r in rules},
                    ),
                ],
            }
        ],
    )
