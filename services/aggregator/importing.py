"""Reading the administrators' spreadsheets (CSV or XLSX) of units and targets.

Every row is validated before anything is sent; one bad row means nothing is imported,
and the report names every bad row by its line number in the file.
"""

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from openpyxl import load_workbook
from pydantic import BaseModel, ValidationError

from services.aggregator.admin import CONTACT_COLUMNS, TargetIn, UnitIn

M = TypeVar("M", bound=BaseModel)
UNIT_COLUMNS = ("code", "name", "type", "level", "parent_code", *CONTACT_COLUMNS)
TARGET_COLUMNS = ("unit", "indicator", "target", "baseline", "deadline")


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {column: text}) of every non-empty row after the header."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        sheet = load_workbook(path, read_only=True, data_only=True).active
        assert sheet is not None
        rows: Iterable[tuple[object, ...]] = sheet.iter_rows(values_only=True)
    else:
        text = path.read_text(encoding="utf-8-sig")
        rows = (tuple(r) for r in csv.reader(io.StringIO(text)))
    header: list[str] | None = None
    for line, row in enumerate(rows, start=1):
        cells = ["" if c is None else str(c).strip() for c in row]
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if not any(cells):
            continue
        yield line, dict(zip(header, cells, strict=False))


def _parse(
    rows: Iterable[tuple[int, dict[str, str]]],
    model: type[M],
    columns: tuple[str, ...],
    tick: Callable[[], object],
) -> tuple[list[M], list[RowError]]:
    parsed: list[M] = []
    errors: list[RowError] = []
    for line, row in rows:
        tick()
        unknown = sorted(set(row) - set(columns) - {""})
        if unknown:
            errors.append(RowError(line, f"unknown column(s) {', '.join(unknown)}"))
            continue
        values = {k: v for k, v in row.items() if k in columns and v != ""}
        try:
            parsed.append(model.model_validate(values))
        except ValidationError as exc:
            for e in exc.errors():
                field = ".".join(str(p) for p in e["loc"]) or "row"
                errors.append(RowError(line, f"{field}: {e['msg']}"))
    return parsed, errors


def parse_units(
    rows: Iterable[tuple[int, dict[str, str]]], tick: Callable[[], object] = lambda: None
) -> tuple[list[UnitIn], list[RowError]]:
    """Units of a sheet, plus tree checks across rows (duplicates, unknown parents)."""
    listed = list(rows)
    units, errors = _parse(listed, UnitIn, UNIT_COLUMNS, tick)
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


def parse_targets(
    rows: Iterable[tuple[int, dict[str, str]]], tick: Callable[[], object] = lambda: None
) -> tuple[list[TargetIn], list[RowError]]:
    listed = list(rows)
    targets, errors = _parse(listed, TargetIn, TARGET_COLUMNS, tick)
    seen: dict[tuple[str, str], int] = {}
    for line, row in listed:
        key = (row.get("unit", ""), row.get("indicator", ""))
        if key in seen:
            errors.append(RowError(line, f"{key[0]}/{key[1]} repeats line {seen[key]}"))
        seen.setdefault(key, line)
    return targets, sorted(errors, key=lambda e: e.line)
