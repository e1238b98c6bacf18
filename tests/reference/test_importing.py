"""Spreadsheet imports report every bad row by line and accept nothing partial."""

from pathlib import Path

from openpyxl import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from services.aggregator.importing import parse_targets, parse_units, read_rows

UNITS_CSV = """code,name,type,level,parent_code
01,Thành phố Hà Nội,thành phố trung ương,1,
001,Quận Ba Đình,quận,2,01
00004,Phường Phúc Xá,phường,3,001
,Không mã,phường,3,001
00007,Phường Trúc Bạch,phường,seven,001
00004,Phường trùng mã,phường,3,001

00010,Phường lạc cấp,phường,2,001
"""


def test_every_bad_unit_row_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "units.csv"
    path.write_text(UNITS_CSV, encoding="utf-8")
    _, errors = parse_units(read_rows(path))
    lines = [e.line for e in errors]
    assert lines == [5, 6, 7, 9]
    assert "code" in str(errors[0])
    assert "level" in str(errors[1])
    assert "repeats line 4" in str(errors[2])
    assert "level 2 under a level 2 parent 001" in str(errors[3])


def test_the_real_hanoi_unit_list_imports_cleanly() -> None:
    from importlib import resources
    from pathlib import Path

    path = Path(str(resources.files("devtools.demo") / "data" / "hanoi_units.csv"))
    units, errors = parse_units(read_rows(path))
    assert errors == []
    assert len(units) == 610
    assert units[0].code == "01"


def test_xlsx_targets_with_bad_rows(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert isinstance(sheet, Worksheet)  # narrows the type: a new workbook opens on one
    sheet.append(["unit", "indicator", "target", "baseline"])
    sheet.append(["00004", "cccd_collected", 120, 0])
    sheet.append(["00007", "cccd_collected", -5, 0])
    sheet.append(["00004", "cccd_collected", 130, 0])
    sheet.append(["00010", "cccd_collected", 90, "many"])
    path = tmp_path / "targets.xlsx"
    book.save(path)
    _, errors = parse_targets(read_rows(path))
    assert [(e.line, e.message.split(":")[0]) for e in errors] == [
        (3, "target"),
        (4, "00004/cccd_collected repeats line 2"),
        (5, "baseline"),
    ]
