"""The README's benchmark table and docs/capacity.md's measured figures are generated from
the committed bench/results/latest.json (`python -m bench.report --readme`): they cannot
drift from it, nor be edited by hand. Without a committed run, both say so."""

import pytest

from bench import capacity, report


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
