"""Administrators' spreadsheets (CSV or XLSX): rows by line number, each validated as a
model, every bad row reported by its line (the imports of the services' CLIs).

What a cell means is read once, here, for every import (docs/admin.md, *Spreadsheets*):

- text is NFC (`normal_text`): a file saved on a Mac (NFD) reads as the same names;
- an XLSX cell keeps its type until the model's field says what the column is
  (`parse_rows`): a number in a text column (a code, a phone number) has lost its
  leading zeros, so it is refused with its line and column, unless its number format
  pads it with zeros (`00000`), which gives the text back exactly; a date in a date
  column is read in the time zone the caller knows (a campaign's), else refused; a
  formula with no computed value, or an error value (`#REF!`), is refused;
- a row with a cell past the header's last column (or under a blank header) is refused,
  and so is a header naming a column twice;
- a file that cannot be read at all (missing, not a workbook, not UTF-8, separated by
  semicolons) is one `SheetError` naming the file.
"""

import csv
import io
import re
import types
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from openpyxl import load_workbook
from openpyxl.styles.numbers import is_datetime
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

ENCODING_HINT = "UTF-8 (Excel: Save As 'CSV UTF-8'; a byte order mark is allowed)"
TEXT_HINT = "format the column as Text and type the values again"


def normal_text(text: str) -> str:
    """The one form reference text is kept in, wherever it enters (a sheet's cells, the
    admin bodies' names): Unicode NFC, so that `Phường` typed on Windows and saved on a
    Mac (decomposed, NFD) is one name, not two."""
    return unicodedata.normalize("NFC", text)


class SheetError(ValueError):
    """A file that cannot be read as a sheet at all: one line, naming the file."""


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class Row(dict[str, str]):
    """A row's cells by column; `problems`: what is wrong with the row as a whole (a cell
    past the header), reported by `parse_rows` with its line."""

    problems: list[str]

    def __init__(self, cells: Iterable[tuple[str, str]] = (), problems: list[str] | None = None):
        super().__init__(cells)
        self.problems = problems or []


class Cell(str):
    """An XLSX cell that is not text (a number, a date, a boolean, an error, a formula
    without a computed value), kept with its type and number format: its text, as a
    plain `str`, is the value's (4, 120, 2023-06-30T00:00:00), but what the column makes
    of it is `parse_rows`' to say (`as_text`, `as_number`, `as_moment`)."""

    value: object
    number_format: str
    column: str
    problem: str | None

    def __new__(
        cls,
        value: object,
        number_format: str | None,
        column: str,
        problem: str | None = None,
        text: str | None = None,
    ) -> "Cell":
        cell = super().__new__(cls, _plain(value) if text is None else text)
        cell.value = value
        cell.number_format = number_format or "General"
        cell.column = column
        cell.problem = problem
        return cell

    def as_text(self) -> str:
        """The text the cell shows, when that is exact: a whole number padded by its
        format (`00000` shows 4 as 00004). Any other number, a date or a boolean in a
        text column is refused (ValueError): Excel dropped its leading zeros, or made a
        date of it, and the text typed is gone."""
        self._refuse_problem()
        n = self.value
        if isinstance(n, int | float) and not isinstance(n, bool) and float(n).is_integer():
            if n >= 0 and re.fullmatch(r"0+", self.number_format):
                return str(int(n)).zfill(len(self.number_format))
            raise ValueError(
                f"the number {_plain(n)} in a text column (its leading zeros are lost); "
                + TEXT_HINT
            )
        raise ValueError(f"{_what(n)} in a text column; {TEXT_HINT}")

    def as_number(self) -> str:
        """The number's text (120.0 is 120); a date or a boolean is refused."""
        self._refuse_problem()
        if isinstance(self.value, int | float | Decimal) and not isinstance(self.value, bool):
            return _plain(self.value)
        raise ValueError(f"{_what(self.value)} in a number column")

    def as_moment(self, zone: str | None) -> str:
        """A date cell as RFC 3339 text in `zone` (the campaign's): a date and time as that
        wall time, a date alone as the last second of that day (a deadline of 30 June is
        the end of 30 June). Without a zone, or for a number or a time of day, refused."""
        self._refuse_problem()
        value = self.value
        if not isinstance(value, date):
            raise ValueError(
                f"{_what(value)} in a date column; format the cell as a date, or type "
                "the moment as text with its offset (2023-06-30T23:59:59+07:00)"
            )
        if zone is None:
            raise ValueError(
                "a date cell, but the campaign's time zone is not known here; type the "
                "moment as text with its offset (2023-06-30T23:59:59+07:00)"
            )
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"a date cell, but the campaign's time zone {zone!r} is unknown"
            ) from exc
        kind = is_datetime(self.number_format)
        if isinstance(value, datetime) and kind != "date":
            local = value.replace(tzinfo=tz)
        else:
            day = value.date() if isinstance(value, datetime) else value
            local = datetime.combine(day, time(23, 59, 59), tz)
        return local.isoformat()

    def _refuse_problem(self) -> None:
        if self.problem is not None:
            raise ValueError(self.problem)


def _plain(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return "" if value is None else str(value)


def _what(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).upper()}"
    if isinstance(value, datetime | date):
        return f"the date {_plain(value)}"
    if isinstance(value, time | timedelta):
        return f"the time {value}"
    if isinstance(value, int | float):
        return f"the number {_plain(value)}"
    return f"the value {value!r}"


def read_rows(path: Path) -> Iterator[tuple[int, Row]]:
    """(line number, {column: text}) of every non-empty row after the header; SheetError
    for a file that cannot be read (named in the message)."""
    suffix = path.suffix.lower()
    if suffix == ".xls":
        raise SheetError(f"{path}: an old Excel .xls workbook; save it as .xlsx or CSV UTF-8")
    rows = _xlsx_rows(path) if suffix in (".xlsx", ".xlsm") else _csv_rows(path)
    header: list[str] | None = None
    for line, cells in rows:
        if header is None:
            header = [normal_text(str(c)).strip().lower() for c in cells]
            _check_header(path, header)
            continue
        while cells and cells[-1] == "":
            cells.pop()
        if not any(cells):
            continue
        row = Row((h, c) for h, c in zip(header, cells, strict=False) if h)
        row.problems = [
            f"column {_letter(i)}: a cell past the header's columns ({c!r})"
            + ("; quote a value that holds a comma" if suffix not in (".xlsx", ".xlsm") else "")
            for i, c in enumerate(cells)
            if c != "" and (i >= len(header) or not header[i])
        ]
        for h in header:
            if h:
                row.setdefault(h, "")
        yield line, row


def _check_header(path: Path, header: list[str]) -> None:
    if len(header) == 1 and ";" in header[0]:
        raise SheetError(
            f"{path}: the header is one column {header[0]!r}: the file is separated by "
            "semicolons; save it with commas (Excel: 'CSV UTF-8 (Comma delimited)')"
        )
    first: dict[str, int] = {}
    for i, h in enumerate(header):
        if h and h in first:
            raise SheetError(
                f"{path} line 1: column {h!r} repeats (columns {_letter(first[h])} and "
                f"{_letter(i)}); which one would count?"
            )
        first.setdefault(h, i)


def _letter(index: int) -> str:
    return get_column_letter(index + 1)


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SheetError(f"{path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SheetError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
            f"save it as {ENCODING_HINT}"
        ) from exc
    reader = csv.reader(io.StringIO(text))
    try:
        for cells in reader:
            yield reader.line_num, [normal_text(c).strip() for c in cells]
    except csv.Error as exc:
        raise SheetError(f"{path} line {reader.line_num}: {exc}") from exc


def _xlsx_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """The active sheet's rows: text cells as NFC text, other cells as `Cell`s. Read twice
    in step, computed values and formulas: a formula that was never computed (a file
    written by a program, not saved by Excel) reads as empty in the first."""
    try:
        values = load_workbook(path, read_only=True, data_only=True)
        formulas = load_workbook(path, read_only=True, data_only=False)
    except FileNotFoundError as exc:
        raise SheetError(f"{path}: no such file") from exc
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise SheetError(f"{path}: not an Excel workbook (.xlsx) ({exc})") from exc
    try:
        sheet, written = values.active, formulas.active
        if sheet is None or written is None:
            raise SheetError(f"{path}: the workbook has no sheet")
        pairs = zip(sheet.iter_rows(), written.iter_rows(), strict=False)
        for line, (row, raw) in enumerate(pairs, start=1):
            yield line, [_cell(c, f, i) for i, (c, f) in enumerate(zip(row, raw, strict=False))]
    finally:
        values.close()
        formulas.close()


def _cell(cell: Any, written: Any, index: int) -> str:
    value = cell.value
    column = _letter(index)
    if getattr(written, "data_type", None) == "f" and value is None:
        return Cell(
            None,
            None,
            column,
            f"the formula {written.value} has no computed value (the file was written by "
            "a program that does not compute formulas); open and save it in Excel or "
            "LibreOffice, or type the value",
            text=str(written.value),
        )
    if value is None:
        return ""
    if getattr(cell, "data_type", None) == "e":
        return Cell(value, None, column, f"the error value {value}")
    if isinstance(value, str):
        return normal_text(value).strip()
    return Cell(value, cell.number_format, column)


Kind = Literal["text", "number", "moment"]


def field_kind(annotation: Any) -> Kind:
    """What a model's field makes of a cell: text, a number or a moment (a date cell)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return field_kind(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        kinds = {field_kind(a) for a in get_args(annotation) if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else "text"
    if isinstance(annotation, type):
        if issubclass(annotation, bool | Enum | str):
            return "text"
        if issubclass(annotation, int | float | Decimal):
            return "number"
        if issubclass(annotation, datetime | date):
            return "moment"
    return "text"


def cell_text(value: str, kind: Kind, zone: str | None = None) -> str:
    """A cell's text for a column of `kind` (ValueError: the cell cannot be that)."""
    if not isinstance(value, Cell):
        return value
    if kind == "number":
        return value.as_number()
    if kind == "moment":
        return value.as_moment(zone)
    return value.as_text()


def parse_rows(
    rows: Iterable[tuple[int, dict[str, str]]],
    model: type[M],
    columns: tuple[str, ...],
    tick: Callable[[], object],
    *,
    zone: str | None = None,
) -> tuple[list[M], list[RowError]]:
    """Each row as `model` (blank cells left out), or every problem of it by line. A cell
    is read as its column's field takes it (`field_kind`); `zone`: the time zone a date
    cell is read in (None: date cells are refused)."""
    parsed: list[M] = []
    errors: list[RowError] = []
    for line, row in rows:
        tick()
        problems = list(getattr(row, "problems", ()))
        unknown = sorted(set(row) - set(columns) - {""})
        if unknown:
            problems.append(f"unknown column(s) {', '.join(unknown)}")
        values: dict[str, str] = {}
        for k, v in row.items():
            if k not in columns or v == "":
                continue
            field = model.model_fields.get(k)
            try:
                values[k] = cell_text(v, field_kind(field.annotation) if field else "text", zone)
            except ValueError as exc:
                where = f"column {v.column} ({k})" if isinstance(v, Cell) else k
                problems.append(f"{where}: {exc}")
        if problems:
            errors += [RowError(line, p) for p in problems]
            continue
        try:
            parsed.append(model.model_validate(values))
        except ValidationError as exc:
            for e in exc.errors():
                field_name = ".".join(str(p) for p in e["loc"]) or "row"
                errors.append(RowError(line, f"{field_name}: {e['msg']}"))
    return parsed, errors
