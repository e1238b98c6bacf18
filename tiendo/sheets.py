"""Administrators' spreadsheets (CSV or XLSX): rows by line number, each validated as a
model, every bad row reported by its line (the imports of the services' CLIs)."""

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from openpyxl import load_workbook
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


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


def parse_rows(
    rows: Iterable[tuple[int, dict[str, str]]],
    model: type[M],
    columns: tuple[str, ...],
    tick: Callable[[], object],
) -> tuple[list[M], list[RowError]]:
    """Each row as `model` (blank cells left out), or every problem of it by line."""
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
