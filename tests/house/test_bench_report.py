"""The README's benchmark table and docs/capacity.md's measured figures are generated from
the committed bench/results/latest.json (`python -m bench.report --readme`): they cannot
drift from it, nor be edited by hand. Without a committed run, both say so."""

import pytest

from bench import capacity, goals, report


def test_the_readmes_table_is_the_committed_runs() -> None:
    expected = report.readme_block(report.load())
    assert report.block_of(report.README.read_text(), report.README_BLOCK) == expected, (
        "run `python -m bench.report --readme`"
    )


def test_the_capacity_figures_are_the_committed_runs() -> None:
    expected = capacity.block(report.load())
    assert report.block_of(capacity.DOC.read_text(), capacity.BLOCK) == expected, (
        "run `python -m bench.report --readme`"
    )


def test_a_block_is_replaced_between_its_markers_only() -> None:
    markers = ("<!-- a -->", "<!-- b -->")
    text = "head\n<!-- a -->\nold\n<!-- b -->\ntail <!-- b -->\n"
    rewritten = report.replace_block(text, markers, "new\nlines")
    assert rewritten == "head\n<!-- a -->\nnew\nlines\n<!-- b -->\ntail <!-- b -->\n"
    assert report.block_of(rewritten, markers) == "new\nlines"
    with pytest.raises(ValueError, match="not found"):
        report.replace_block("no markers", markers, "x")


def test_a_goal_is_met_by_its_figure_and_its_ratio_to_the_ceiling() -> None:
    results = {
        "reads": {
            "alone": {"live_country": {"p99_ms": 60.0}, "ceiling_bare_pk_read": {"p99_ms": 0.5}}
        },
        "ceiling_bare_consume": {"events_per_second": 300_000},
        "aggregator_apply": {"events_per_second": 31_000},
        "aggregator_apply_scaled": {"events_per_second": 50_000},
    }
    judged = {g["goal"]: g for g in goals.judge(results)}
    # only the goals whose figures the run has
    assert set(judged) == {"live_country_alone", "apply", "apply_scaled"}
    assert judged["live_country_alone"]["ratio"] == 120
    assert not judged["live_country_alone"]["met"]
    # over 30,000 events/s but under 0.15 × bare consume
    assert judged["apply"]["ratio"] == 0.1
    assert not judged["apply"]["met"]
    assert judged["apply_scaled"]["met"]
