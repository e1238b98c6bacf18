"""The pure rule of loading a tree version (`services.aggregator.tree_versions`), over
generated trees and changes: a good file always loads into one tree at every moment, and
a bad file is refused naming exactly its bad rows."""

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.demo.tree_chain import chain
from services.aggregator.tree_versions import (
    CrosswalkRow,
    StoredVersion,
    TransferOut,
    TreeError,
    TreeRow,
    VersionPlan,
    applied,
    cut_over,
    plan_version,
)
from services.ingest.validation import Catalog, Successor, UnitVersion

DAY = date(2025, 7, 1)


def first_versions(wards: int, districts: int, assign: list[int]) -> list[StoredVersion]:
    """City 01 → districts D0.. → wards W0.. (ward i in district assign[i])."""
    out = [StoredVersion("01", "01", "city", "", 1, None)]
    out += [StoredVersion(f"D{d}", f"D{d}", f"district {d}", "", 2, "01") for d in range(districts)]
    out += [
        StoredVersion(f"W{w}", f"W{w}", f"ward {w}", "", 3, f"D{assign[w] % districts}")
        for w in range(wards)
    ]
    return out


@st.composite
def changes(draw: st.DrawFn) -> tuple[list[StoredVersion], list[TreeRow], list[CrosswalkRow]]:
    """A first tree and a good next tree with its crosswalk: each ward is kept, renamed,
    moved to another district, merged into a kept ward, or split over kept wards (with or
    without shares); some districts go; new wards may come."""
    districts = draw(st.integers(1, 4))
    wards = draw(st.integers(2, 12))
    assign = draw(st.lists(st.integers(0, 3), min_size=wards, max_size=wards))
    stored = first_versions(wards, districts, assign)
    fate = draw(
        st.lists(
            st.sampled_from(["keep", "rename", "move", "merge", "split"]),
            min_size=wards,
            max_size=wards,
        )
    )
    fate[0] = "keep"  # someone must be left to merge into
    kept = [w for w in range(wards) if fate[w] in ("keep", "rename", "move")]
    # a district may go only with wards: a unit gone with no row and no children is an error
    peopled = sorted({a % districts for a in assign} - {0})
    gone_districts = draw(st.sets(st.sampled_from(peopled))) if peopled else set()
    live = [d for d in range(districts) if d not in gone_districts]
    rows: list[TreeRow] = [TreeRow(0, "01", "city", "", 1, None)]
    rows += [TreeRow(0, f"D{d}", f"district {d}", "", 2, "01") for d in live]
    crosswalk: list[CrosswalkRow] = []
    for w in range(wards):
        district = assign[w] % districts
        home = district if district in live else live[0]
        if fate[w] == "move":
            home = live[(live.index(home) + 1) % len(live)]
        if fate[w] in ("keep", "rename", "move"):
            name = f"ward {w}" + (" renamed" if fate[w] == "rename" else "")
            rows.append(TreeRow(0, f"W{w}", name, "", 3, f"D{home}"))
        elif fate[w] == "merge":
            into = draw(st.sampled_from(kept))
            crosswalk.append(CrosswalkRow(0, f"W{w}", f"W{into}", "whole"))
        else:
            parts = draw(st.lists(st.sampled_from(kept), min_size=1, max_size=3, unique=True))
            shares: list[Decimal | None] = [None] * len(parts)
            if draw(st.booleans()):
                n = len(parts) - 1
                cuts = draw(st.lists(st.integers(1, 99), min_size=n, max_size=n, unique=True))
                edges = [0, *sorted(cuts), 100]
                shares = [Decimal(b - a) / 100 for a, b in pairwise(edges)]
            crosswalk += [
                CrosswalkRow(0, f"W{w}", f"W{p}", "part", s)
                for p, s in zip(parts, shares, strict=True)
            ]
    new_wards = draw(st.integers(0, 2))
    rows += [TreeRow(0, f"N{n}", f"new {n}", "", 3, f"D{live[0]}") for n in range(new_wards)]
    rows = draw(st.permutations(rows))
    crosswalk = draw(st.permutations(crosswalk))
    return (
        stored,
        [replace(r, line=i + 2) for i, r in enumerate(rows)],
        [replace(c, line=i + 2) for i, c in enumerate(crosswalk)],
    )


def planned(
    stored: list[StoredVersion], rows: list[TreeRow], crosswalk: list[CrosswalkRow]
) -> VersionPlan:
    plan = plan_version(stored, rows, crosswalk, DAY)
    assert not isinstance(plan, list), plan
    return plan


@settings(max_examples=200, deadline=None)
@given(changes())
def test_a_good_file_makes_one_tree_at_every_moment(
    change: tuple[list[StoredVersion], list[TreeRow], list[CrosswalkRow]],
) -> None:
    stored, rows, crosswalk = change
    plan = planned(stored, rows, crosswalk)
    after = applied(stored, plan)
    keys = [v.key for v in after]
    assert len(keys) == len(set(keys))
    in_force = {v.key: v for v in after if v.valid_to is None}
    # the new tree, one version per code, each under a parent in force with it
    assert sorted(v.admin_code for v in in_force.values()) == sorted(r.code for r in rows)
    assert all(v.parent_key is None or v.parent_key in in_force for v in in_force.values())
    # the day before, the old tree, untouched
    before = {v.key: v for v in after if v.valid_from is None or v.valid_from < plan.at}
    assert {k: replace(v, valid_to=None) for k, v in before.items()} == {v.key: v for v in stored}
    # every closed version says where its people went, and a whole goes to one unit
    closed = {c.key for c in plan.closed}
    assert closed == {k for k, v in before.items() if v.valid_to == plan.at}
    went: dict[str, set[str]] = {}
    for t in plan.transfers:
        assert t.new_key in in_force
        went.setdefault(t.old_key, set()).add(t.new_key)
    assert set(went) == closed
    wholes = {t.old_key for t in plan.transfers if t.transfer == "whole"}
    assert all(len(went[k]) == 1 for k in wholes)
    assert {c.key for c in plan.closed if c.grace_until is not None} == wholes
    assert all(
        c.grace_until == cut_over(DAY) + timedelta(days=90) for c in plan.closed if c.grace_until
    )
    # a reused code is keyed by its day; a code first seen by its own name
    for n in plan.opened:
        assert n.key == (
            f"{n.admin_code}@{DAY}"
            if n.admin_code in {v.admin_code for v in stored}
            else n.admin_code
        )


@settings(max_examples=200, deadline=None)
@given(changes(), st.data())
def test_a_bad_file_is_refused_naming_exactly_its_bad_rows(
    change: tuple[list[StoredVersion], list[TreeRow], list[CrosswalkRow]], data: st.DataObject
) -> None:
    stored, rows, crosswalk = change
    # bad rows: an old code the day before never knew, a new code the tree lacks; placed
    # anywhere in the file, the good rows' lines shifting around them
    bad = data.draw(
        st.lists(
            st.sampled_from(
                [
                    CrosswalkRow(0, "X1", "01", "whole"),
                    CrosswalkRow(0, "W0", "X2", "part", None),
                    CrosswalkRow(0, "X3", "X4", "whole"),
                ]
            ),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    mixed = list(crosswalk)
    for b in bad:
        mixed.insert(data.draw(st.integers(0, len(mixed))), b)
    mixed = [replace(c, line=i + 2) for i, c in enumerate(mixed)]
    result = plan_version(stored, rows, mixed, DAY)
    assert isinstance(result, list)
    blamed = {e.line for e in result if e.source == "crosswalk" and e.line is not None}
    wanted = {c.line for c in mixed if c.old_code.startswith("X") or c.new_code.startswith("X")}
    assert blamed == wanted, (result, wanted)


@settings(max_examples=200, deadline=None)
@given(changes(), st.data())
def test_shares_that_do_not_sum_to_one_blame_every_row_of_that_split_only(
    change: tuple[list[StoredVersion], list[TreeRow], list[CrosswalkRow]], data: st.DataObject
) -> None:
    stored, rows, crosswalk = change
    splits = sorted({c.old_code for c in crosswalk if c.transfer == "part"})
    if not splits:
        return
    victim = data.draw(st.sampled_from(splits))
    group = [c for c in crosswalk if c.old_code == victim]
    spoilt = data.draw(st.sampled_from(["short", "mixed"] if len(group) > 1 else ["short"]))
    changed = []
    for i, c in enumerate(group):
        share: Decimal | None
        if spoilt == "short":
            share = (c.share or Decimal(1) / len(group)) * Decimal("0.9")
        else:
            share = Decimal("0.5") if i == 0 else None
        changed.append(replace(c, share=share))
    by_line = {c.line: c for c in changed}
    mixed = [by_line.get(c.line, c) for c in crosswalk]
    result = plan_version(stored, rows, mixed, DAY)
    assert isinstance(result, list)
    assert {e.line for e in result} == {c.line for c in group}
    word = "not 1" if spoilt == "short" else "mix given and empty"
    assert all(word in e.message for e in result)


def test_a_cycle_and_a_missing_parent_are_named_by_line() -> None:
    stored = first_versions(2, 1, [0, 0])
    rows = [
        TreeRow(2, "01", "city", "", 1, None),
        TreeRow(3, "D0", "district 0", "", 2, "01"),
        TreeRow(4, "W0", "ward 0", "", 3, "D0"),
        TreeRow(5, "W1", "ward 1", "", 3, "D9"),
        TreeRow(6, "A", "a", "", 3, "B"),
        TreeRow(7, "B", "b", "", 3, "A"),
    ]
    errors = plan_version(stored, rows, [], DAY)
    assert isinstance(errors, list)
    assert [(e.line, e.message) for e in errors if e.source == "units"] == [
        (5, "parent D9 is not a unit of this tree"),
        (6, "A is its own ancestor (a cycle)"),
        (6, "level 3 under a level 3 parent B"),
        (7, "B is its own ancestor (a cycle)"),
        (7, "level 3 under a level 3 parent A"),
    ]


def test_a_tree_for_a_day_before_the_latest_is_refused() -> None:
    stored = first_versions(2, 1, [0, 0])
    rows = [TreeRow(i + 2, v.key, v.name, "", v.level, v.parent_key) for i, v in enumerate(stored)]
    renamed = [replace(r, name="renamed") if r.code == "W1" else r for r in rows]
    after = applied(stored, planned(stored, renamed, []))
    errors = plan_version(after, rows, [], DAY - timedelta(days=1))
    assert isinstance(errors, list)
    assert [e.line for e in errors] == [5]  # W1's row: it has a version from DAY
    errors = plan_version(after, rows, [], DAY)
    assert isinstance(errors, list)
    assert errors == [
        TreeError(
            "units", 5, "W1 already has a version from 2025-07-01, later than or on this tree's day"
        )
    ]


def test_hanoi_chain_counts() -> None:
    """The numbers of the closing note (devtools/demo/data/README.md)."""
    c = chain()
    assert c.missing_on_june_30 == []
    assert (len(c.january.closed), len(c.january.opened)) == (53 + 33, 33)
    assert (len(c.july.closed), len(c.july.opened)) == (526 + 30, 126)
    assert (c.wards_2023, c.exact, c.split) == (579, 368, 211)
    assert (c.split_units, c.rows_needing_shares) == (199, 468)


@settings(max_examples=200, deadline=None)
@given(changes())
def test_ingest_reads_a_loaded_change_as_the_loader_meant_it(
    change: tuple[list[StoredVersion], list[TreeRow], list[CrosswalkRow]],
) -> None:
    """Ingest's catalogue over the versions a load wrote: before the cut-over every old
    code names its old version; after it, a code of the new tree its new version, a code
    gone whole its one successor during the grace only, a split code its successors."""
    stored, rows, crosswalk = change
    plan = planned(stored, rows, crosswalk)
    after = applied(stored, plan)
    grace = {c.key: c.grace_until for c in plan.closed}
    names = {v.key: v for v in after}
    went: dict[str, list[TransferOut]] = {}
    for t in plan.transfers:
        went.setdefault(t.old_key, []).append(t)
    versions: dict[str, list[UnitVersion]] = {}
    for v in after:
        out = went.get(v.key, [])
        versions.setdefault(v.admin_code, []).append(
            UnitVersion(
                key=v.key,
                valid_from=v.valid_from,
                valid_to=v.valid_to,
                grace_until=grace.get(v.key),
                whole=next((t.new_key for t in out if t.transfer == "whole"), None),
                successors=tuple(
                    Successor(t.new_key, names[t.new_key].admin_code, names[t.new_key].name)
                    for t in out
                ),
            )
        )
    catalog = Catalog(
        units={v.key: () for v in after},
        indicators=frozenset(),
        versions={c: tuple(vs) for c, vs in versions.items()},
    )
    second = timedelta(seconds=1)
    new_keys = {v.admin_code: v.key for v in after if v.valid_to is None}
    for old in stored:
        assert catalog.attribute(old.admin_code, plan.at - second).key == old.key
        now = catalog.attribute(old.admin_code, plan.at)
        late = catalog.attribute(old.admin_code, plan.at + timedelta(days=90))
        out = went.get(old.key, [])
        if old.admin_code in new_keys:
            assert now.key == late.key == new_keys[old.admin_code]
        elif any(t.transfer == "whole" for t in out):
            assert (now.key, late.key) == (out[0].new_key, None)
        else:
            assert now.key is None
            assert {s.key for s in now.successors} == {t.new_key for t in out}
