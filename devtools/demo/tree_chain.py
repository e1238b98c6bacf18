"""Hà Nội's tree through its two 2025 changes, checked with the loader's own rule
(`services.aggregator.tree_versions.plan_version`), in memory.

    python -m devtools.demo.tree_chain [--shares-template FILE]

Loads the 2023 tree, the 53 merges of 1 January 2025 (the inferred crosswalk, absorbers
under the names the July table gives them on 30 June 2025), then the 1 July 2025 tree with
the official crosswalk; prints how the 579 wards of 2023 reach the 126 communes, and can
write the rows an operator must give shares for.
"""

import argparse
import csv
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path

from services.aggregator.tree_versions import (
    CrosswalkRow,
    StoredVersion,
    TreeError,
    TreeRow,
    VersionPlan,
    applied,
    plan_version,
)

JANUARY = date(2025, 1, 1)
JULY = date(2025, 7, 1)


def read(name: str) -> list[dict[str, str]]:
    text = (resources.files("devtools.demo") / "data" / name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def spelling(name: str) -> str:
    """A name up to the old and new placement of the tone mark (Hoà/Hòa) and a capital
    after the type (Đại áng): respellings, not renames."""
    return name.replace("oà", "òa").replace("oá", "óa").replace("oạ", "ọa").lower()


def tree_rows(rows: list[dict[str, str]]) -> list[TreeRow]:
    return [
        TreeRow(line, r["code"], r["name"], r["type"], int(r["level"]), r["parent_code"] or None)
        for line, r in enumerate(rows, start=2)
    ]


def crosswalk_rows(rows: list[dict[str, str]]) -> list[CrosswalkRow]:
    return [
        CrosswalkRow(
            line,
            r["old_code"],
            r["new_code"],
            "part" if r["transfer"] == "part" else "whole",
            Decimal(r["share"]) if r.get("share") else None,
        )
        for line, r in enumerate(rows, start=2)
    ]


def first_tree(rows: list[TreeRow]) -> list[StoredVersion]:
    """The 2023 tree as first versions, in force since before anything tiendo knows."""
    return [StoredVersion(r.code, r.code, r.name, r.type, r.level, r.parent_code) for r in rows]


def january_tree(
    units_2023: list[dict[str, str]], merges: list[dict[str, str]], july: list[dict[str, str]]
) -> list[dict[str, str]]:
    """The 2023 tree less the merged wards; a ward the July table names otherwise on 30
    June 2025 (not a respelling) is renamed, which the merges of 1 January did."""
    merged = {m["old_code"] for m in merges}
    names = {r["old_code"]: r["old_name"] for r in july}
    out = []
    for r in units_2023:
        if r["code"] in merged:
            continue
        name = names.get(r["code"], r["name"])
        out.append({**r, "name": name if spelling(name) != spelling(r["name"]) else r["name"]})
    return out


@dataclass(frozen=True, slots=True)
class Chain:
    january: VersionPlan
    july: VersionPlan
    versions: list[StoredVersion]
    wards_2023: int
    exact: int  # wards whose whole chain ends in one 2025 commune
    split: int  # wards whose history needs shares
    split_units: int  # units of 30 June 2025 split in July
    rows_needing_shares: int
    missing_on_june_30: list[str]  # old codes of the July table not in force then
    unconfirmed: list[str]  # January absorbers renamed to a name no merged unit carries


def chain() -> Chain:
    units_2023 = read("hanoi_units.csv")
    merges = read("hanoi_crosswalk_2025-01_inferred.csv")
    july_rows = read("hanoi_crosswalk_2025.csv")
    rows_2023 = tree_rows(units_2023)
    stored = first_tree(rows_2023)
    january = _ok(
        plan_version(
            stored, tree_rows(read("hanoi_units_2025-01.csv")), crosswalk_rows(merges), JANUARY
        )
    )
    stored = applied(stored, january)
    june_30 = {v.admin_code for v in stored if v.valid_to is None}
    missing = sorted({r["old_code"] for r in july_rows} - june_30)
    july = _ok(
        plan_version(
            stored, tree_rows(read("hanoi_units_2025.csv")), crosswalk_rows(july_rows), JULY
        )
    )
    stored = applied(stored, july)

    successors: dict[str, set[str]] = defaultdict(set)
    split_keys: set[str] = set()
    for t in (*january.transfers, *july.transfers):
        successors[t.old_key].add(t.new_key)
        if t.transfer == "part":
            split_keys.add(t.old_key)
    by_key = {v.key: v for v in stored}

    def ends(key: str) -> tuple[set[str], bool]:
        """The 2025 communes a version's people reach, and whether a split is on the way."""
        if by_key[key].valid_to is None:
            return {key}, False
        out: set[str] = set()
        split = key in split_keys
        for nxt in successors[key]:
            reached, further = ends(nxt)
            out |= reached
            split = split or further
        return out, split

    wards = [r.code for r in rows_2023 if r.level == 3]
    reached = {w: ends(w) for w in wards}
    exact = sum(1 for ends_, split in reached.values() if len(ends_) == 1 and not split)
    part_rows = [r for r in july_rows if r["transfer"] == "part"]
    return Chain(
        january=january,
        july=july,
        versions=stored,
        wards_2023=len(wards),
        exact=exact,
        split=len(wards) - exact,
        split_units=len({r["old_code"] for r in part_rows}),
        rows_needing_shares=len(part_rows),
        missing_on_june_30=missing,
        unconfirmed=_unconfirmed(units_2023, merges, july_rows),
    )


def _unconfirmed(
    units_2023: list[dict[str, str]], merges: list[dict[str, str]], july: list[dict[str, str]]
) -> list[str]:
    """Absorbers whose 30 June name shares no word with any unit merged into them or with
    their own 2023 name: the names alone cannot confirm those merges."""
    names = {r["code"]: r["name"] for r in units_2023}
    june = {r["old_code"]: r["old_name"] for r in july}
    into: dict[str, list[str]] = defaultdict(list)
    for m in merges:
        into[m["new_code"]].append(m["old_code"])

    def words(name: str) -> set[str]:
        return set(spelling(name).split()[1:])  # without the type (Phường, Xã)

    out = []
    for absorber, merged in sorted(into.items()):
        now = words(june[absorber])
        before = set().union(words(names[absorber]), *(words(names[m]) for m in merged))
        if not now & before:
            out.append(
                f"{absorber} {names[absorber]} → {june[absorber]} (absorbed {', '.join(merged)})"
            )
    return out


def _ok(plan: VersionPlan | list[TreeError]) -> VersionPlan:
    if isinstance(plan, list):
        raise SystemExit("\n".join(str(e) for e in plan))
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shares-template", type=Path, help="write the July table with a share column to fill"
    )
    parser.add_argument(
        "--write-january",
        type=Path,
        help="write the tree of 1 January 2025 (the 2023 tree less the merged, renamed)",
    )
    args = parser.parse_args()
    if args.write_january:
        rows = january_tree(
            read("hanoi_units.csv"),
            read("hanoi_crosswalk_2025-01_inferred.csv"),
            read("hanoi_crosswalk_2025.csv"),
        )
        with args.write_january.open("w", encoding="utf-8", newline="") as out:
            tree = csv.DictWriter(
                out, ["code", "name", "type", "level", "parent_code"], lineterminator="\n"
            )
            tree.writeheader()
            tree.writerows(rows)
    c = chain()
    print(  # noqa: T201 - the script's output
        f"1 Jan 2025: {len(c.january.closed)} versions closed, {len(c.january.opened)} opened\n"
        f"1 Jul 2025: {len(c.july.closed)} versions closed, {len(c.july.opened)} opened\n"
        f"old codes of the July table not in force on 30 June 2025: "
        f"{', '.join(c.missing_on_june_30) or 'none'}\n"
        f"2023 wards: {c.wards_2023}; exactly one 2025 commune: {c.exact}; "
        f"split (need shares): {c.split}\n"
        f"units split on 1 July: {c.split_units} ({c.rows_needing_shares} rows need a share)\n"
        "January merges the names do not confirm:\n  " + "\n  ".join(c.unconfirmed)
    )
    if args.shares_template:
        # the whole July table, a share to fill on each part row: the filled file loads
        # as the crosswalk of 1 July 2025
        with args.shares_template.open("w", encoding="utf-8", newline="") as out:
            table = csv.writer(out, lineterminator="\n")
            table.writerow(["old_code", "old_name", "new_code", "new_name", "transfer", "share"])
            for r in read("hanoi_crosswalk_2025.csv"):
                table.writerow(
                    [r["old_code"], r["old_name"], r["new_code"], r["new_name"], r["transfer"], ""]
                )


if __name__ == "__main__":
    main()
