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


def test_a_heavy_read_is_held_against_the_floor_of_what_it_reads() -> None:
    # `as_of` of the country and the leaderboard against the bare pass over the rows each
    # reads (the same rounds), not the one-row read: their ratio says what work beyond the
    # rows a change moved, whatever the box's speed that day
    alone = {
        "as_of_country": {"p99_ms": 400.0},
        "ceiling_bare_half_day_of_events": {"p99_ms": 80.0},
        "leaderboard_communes_live": {"p99_ms": 290.0},
        "ceiling_bare_leaderboard_rows": {"p99_ms": 100.0},
        "ceiling_bare_pk_read": {"p99_ms": 0.1},
    }
    judged = {g["goal"]: g for g in goals.judge({"reads": {"alone": alone}})}
    assert (judged["as_of_country"]["ratio"], judged["as_of_country"]["met"]) == (5, False)
    assert judged["leaderboard_communes"]["ratio"] == 2.9
    assert judged["leaderboard_communes"]["met"]


def test_a_runs_conditions_carry_its_core_speed_where_it_was_measured() -> None:
    """Two runs compare only beside their core speeds; a run from before the probe says
    nothing of it rather than a guess."""
    results = report.load()
    assert results is not None
    m = dict(results["machine"])
    m.pop("core_speed_seconds_before", None)
    m.pop("core_speed_seconds_after", None)
    assert "Python loop" not in report.conditions_line({**results, "machine": m})
    m |= {"core_speed_seconds_before": 0.48, "core_speed_seconds_after": 0.61}
    line = report.conditions_line({**results, "machine": m})
    assert "a fixed Python loop of 10,000,000 additions took 0.48 s before and 0.61 s after" in line
    assert 0 < report.core_speed_seconds(rounds=1) < 60
