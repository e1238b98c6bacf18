"""Reading the administrators' spreadsheets (CSV or XLSX) of units and targets.

Every row is validated before anything is sent; one bad row means nothing is imported,
and the report names every bad row by its line number in the file.
"""

from collections.abc import Callable, Iterable
from typing import Any, Self

from pydantic import BaseModel

from services.aggregator.admin import CONTACT_COLUMNS, TargetIn, UnitIn
from services.aggregator.tree_load import CrosswalkIn, TreeUnitIn
from tiendo.sheets import RowError, SheetError, parse_rows, read_rows

__all__ = ["RowError", "SheetError", "parse_rows", "parse_targets", "parse_units", "read_rows"]
UNIT_COLUMNS = ("code", "name", "type", "level", "parent_code", *CONTACT_COLUMNS)
TARGET_COLUMNS = ("unit", "indicator", "target", "baseline", "deadline")


class _Cells(BaseModel):
    """A row of a sheet, whose cells are all text: read as text is ("500" is the number
    500 here), while the API, whose numbers are strict, takes them only as JSON numbers."""

    @classmethod
    def model_validate(cls, obj: Any, **_: Any) -> Self:
        return cls.model_validate_strings(obj)


class _UnitCells(_Cells, UnitIn):
    pass


class _TargetCells(_Cells, TargetIn):
    pass


class _TreeUnitCells(_Cells, TreeUnitIn):
    pass


def parse_units(
    rows: Iterable[tuple[int, dict[str, str]]], tick: Callable[[], object] = lambda: None
) -> tuple[list[UnitIn], list[RowError]]:
    """Units of a sheet, plus tree checks across rows (duplicates, unknown parents)."""
    listed = list(rows)
    cells, errors = parse_rows(listed, _UnitCells, UNIT_COLUMNS, tick)
    units: list[UnitIn] = list(cells)
    lines = {row.get("code", ""): line for line, row in listed}
    seen: dict[str, int] = {}
    for line, row in listed:
        code = row.get("code", "")
        if code in seen:
            errors.append(RowError(line, f"code {code} repeats line {seen[code]}"))
        seen.setdefault(code, line)
    codes = {u.code for u in units}
    by_code = {u.code: u for u in units}
    for u in units:
        parent = by_code.get(u.parent_code or "")
        if u.parent_code and u.parent_code not in codes:
            # parents may already exist in the database; the server checks those
            continue
        if parent is not None and parent.level != u.level - 1:
            errors.append(
                RowError(
                    lines[u.code],
                    f"level {u.level} under a level {parent.level} parent {parent.code}",
                )
            )
    return units, sorted(errors, key=lambda e: e.line)


# The columns of a targets file that may be left out: a column the file does not carry
# leaves each stored value alone; a blank cell of a column it carries is the default.
OPTIONAL_TARGET_COLUMNS = {"target": None, "baseline": 0, "deadline": None}


def parse_targets(
    rows: Iterable[tuple[int, dict[str, str]]],
    tick: Callable[[], object] = lambda: None,
    *,
    zone: str | None = None,
) -> tuple[list[TargetIn], list[RowError]]:
    """Targets of a sheet. Only the optional columns the file has are sent (`target`,
    `baseline`, `deadline`; a blank cell: none, 0, none), so that a file of targets alone
    keeps the stored baselines and deadlines. `zone`: the campaign's time zone, which a
    date cell of `deadline` is read in (None: a date cell is refused)."""
    listed = list(rows)
    cells, errors = parse_rows(listed, _TargetCells, TARGET_COLUMNS, tick, zone=zone)
    carried = set().union(*(row.keys() for _, row in listed)) if listed else set()
    blank = {k: v for k, v in OPTIONAL_TARGET_COLUMNS.items() if k in carried}
    targets: list[TargetIn] = [
        t.model_copy(update={k: v for k, v in blank.items() if k not in t.model_fields_set})
        for t in cells
    ]
    seen: dict[tuple[str, str], int] = {}
    for line, row in listed:
        key = (row.get("unit", ""), row.get("indicator", ""))
        if key in seen:
            errors.append(RowError(line, f"{key[0]}/{key[1]} repeats line {seen[key]}"))
        seen.setdefault(key, line)
    return targets, sorted(errors, key=lambda e: e.line)


TREE_UNIT_COLUMNS = ("code", "name", "type", "level", "parent_code")
CROSSWALK_COLUMNS = ("old_code", "new_code", "transfer", "share")


def parse_tree_units(
    rows: Iterable[tuple[int, dict[str, str]]],
) -> tuple[list[TreeUnitIn], list[RowError]]:
    """The units of a tree version (the whole tree in force from its day)."""
    cells, errors = parse_rows(rows, _TreeUnitCells, TREE_UNIT_COLUMNS, lambda: None)
    return list(cells), errors


def parse_crosswalk(
    rows: Iterable[tuple[int, dict[str, str]]],
) -> tuple[list[CrosswalkIn], list[RowError]]:
    """Crosswalk rows; other columns (the names people read it by) are left out."""
    kept = ((line, {k: v for k, v in row.items() if k in CROSSWALK_COLUMNS}) for line, row in rows)
    return parse_rows(kept, CrosswalkIn, CROSSWALK_COLUMNS, lambda: None)
