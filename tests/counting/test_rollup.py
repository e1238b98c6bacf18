"""Rollup over trees of any depth."""

from hypothesis import given
from hypothesis import strategies as st

from tiendo.rollup import effective_targets, post_order, subtree_sums

TREE = {"01": None, "001": "01", "002": "01", "00004": "001", "00007": "001", "00010": "002"}


def test_subtree_sums_add_children_to_own_values() -> None:
    own = {"01": 1, "001": 10, "00004": 100, "00007": 1000, "00010": 5}
    totals = subtree_sums(TREE, own)
    assert totals["001"] == 1110
    assert totals["002"] == 5
    assert totals["01"] == 1116


def test_explicit_targets_win_over_the_sum_of_children() -> None:
    targets = effective_targets(TREE, {"00004": 10, "00007": 20, "00010": 7, "002": 100})
    assert targets["001"] == 30
    assert targets["002"] == 100
    assert targets["01"] == 130


@st.composite
def trees(draw: st.DrawFn) -> dict[str, str | None]:
    n = draw(st.integers(1, 60))
    parents: dict[str, str | None] = {"u0": None}
    for i in range(1, n):
        parents[f"u{i}"] = f"u{draw(st.integers(0, i - 1))}"
    return parents


@given(trees(), st.data())
def test_root_total_is_the_sum_of_all_own_values(
    parents: dict[str, str | None], data: st.DataObject
) -> None:
    own = {code: data.draw(st.integers(-50, 50)) for code in parents}
    assert subtree_sums(parents, own)["u0"] == sum(own.values())
    order = post_order(parents)
    assert sorted(order) == sorted(parents)
    position = {code: i for i, code in enumerate(order)}
    assert all(position[c] < position[p] for c, p in parents.items() if p is not None)


def test_deep_trees_do_not_recurse() -> None:
    parents: dict[str, str | None] = {"n0": None}
    for i in range(1, 5000):
        parents[f"n{i}"] = f"n{i - 1}"
    assert subtree_sums(parents, dict.fromkeys(parents, 1))["n0"] == 5000
