"""What a spreadsheet's cells mean (tiendo/sheets.py, docs/admin.md "Spreadsheets"): a number
typed in a text column is refused by its line and column unless its format pads it back,
a date cell is a day in the campaign's zone, a formula never computed, a cell past the
header and a repeated header are refused, a file that is not UTF-8 or separated by
semicolons is one line naming the file, and text is NFC wherever it enters."""

import unicodedata
from datetime import date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from services.aggregator.admin import CampaignIn, UnitIn
from services.aggregator.importing import (
    SheetError,
    parse_crosswalk,
    parse_targets,
    parse_tree_units,
    parse_units,
    read_rows,
)
from services.aggregator.tree_versions import StoredVersion, TreeRow, VersionPlan, plan_version

UNITS: list[object] = ["code", "name", "type", "level", "parent_code"]


def _xlsx(path: Path, rows: list[list[object]], formats: dict[str, str] | None = None) -> Path:
    book = Workbook()
    sheet = book.active
    assert isinstance(sheet, Worksheet)
    for row in rows:
        sheet.append(row)
    for cell, number_format in (formats or {}).items():
        sheet[cell].number_format = number_format
    book.save(path)
    return path


def test_a_code_typed_as_a_number_is_refused_by_line_and_column(tmp_path: Path) -> None:
    path = _xlsx(
        tmp_path / "u.xlsx",
        [UNITS, ["01", "Hà Nội", "tp", 1, None], [1, "Ba Đình", "q", 2, "01"]],
    )
    units, errors = parse_units(read_rows(path))
    assert [u.code for u in units] == ["01"]
    assert [str(e) for e in errors] == [
        "line 3: column A (code): the number 1 in a text column (its leading zeros are "
        "lost); format the column as Text and type the values again"
    ]


@settings(max_examples=25, deadline=None)
@given(number=st.integers(0, 10**9), width=st.integers(1, 12))
def test_a_zero_padded_number_reads_as_the_text_it_shows(
    tmp_path_factory: pytest.TempPathFactory, number: int, width: int
) -> None:
    path = _xlsx(
        tmp_path_factory.mktemp("pad") / "u.xlsx",
        [UNITS, [number, "Hà Nội", "tp", 1, None]],
        {"A2": "0" * width},
    )
    units, errors = parse_units(read_rows(path))
    assert errors == []
    assert units[0].code == str(number).zfill(width)


def test_a_phone_number_typed_as_a_number_is_refused_unless_padded(tmp_path: Path) -> None:
    rows: list[list[object]] = [
        [*UNITS, "chief_phone"],
        ["01", "Hà Nội", "tp", 1, None, 912345678],
    ]
    _, errors = parse_units(read_rows(_xlsx(tmp_path / "a.xlsx", rows)))
    assert [(e.line, e.message.split(":")[0]) for e in errors] == [(2, "column F (chief_phone)")]
    units, errors = parse_units(read_rows(_xlsx(tmp_path / "b.xlsx", rows, {"F2": "0" * 10})))
    assert errors == []
    assert units[0].chief_phone == "0912345678"


def test_numbers_in_number_columns_and_text_cells_read_as_before(tmp_path: Path) -> None:
    path = _xlsx(
        tmp_path / "t.xlsx",
        [
            ["unit", "indicator", "target", "baseline"],
            ["00004", "cccd_collected", 120.0, 0],
            ["00007", "cccd_collected", "130", "5"],
            ["00010", "cccd_collected", 120.5, 0],
            ["00013", "cccd_collected", 1, True],
        ],
    )
    targets, errors = parse_targets(read_rows(path))
    assert [(t.unit, t.target, t.baseline) for t in targets] == [
        ("00004", 120, 0),
        ("00007", 130, 5),
    ]
    assert [(e.line, e.message.split(":")[0]) for e in errors] == [
        (4, "target"),
        (5, "column D (baseline)"),
    ]


def test_a_formula_without_a_computed_value_is_refused(tmp_path: Path) -> None:
    # openpyxl writes formulas without computing them, as any program but a spreadsheet
    path = _xlsx(
        tmp_path / "t.xlsx",
        [["unit", "indicator", "target"], ["00010", "cccd_collected", "=100+20"]],
    )
    targets, errors = parse_targets(read_rows(path))
    assert targets == []
    assert [str(e) for e in errors] == [
        "line 2: column C (target): the formula =100+20 has no computed value (the file was "
        "written by a program that does not compute formulas); open and save it in Excel "
        "or LibreOffice, or type the value"
    ]


def test_a_date_cell_is_a_day_in_the_campaigns_zone_or_refused(tmp_path: Path) -> None:
    path = _xlsx(
        tmp_path / "t.xlsx",
        [
            ["unit", "indicator", "target", "deadline"],
            ["00004", "cccd_collected", 1, date(2023, 6, 30)],
            ["00007", "cccd_collected", 1, datetime(2023, 6, 30, 17, 30)],
            ["00010", "cccd_collected", 1, 45000],
        ],
        {"D2": "dd/mm/yyyy", "D3": "dd/mm/yyyy hh:mm"},
    )
    targets, errors = parse_targets(read_rows(path), zone="Asia/Ho_Chi_Minh")
    assert [t.deadline.isoformat() if t.deadline else None for t in targets] == [
        "2023-06-30T23:59:59+07:00",  # a day alone: the end of that day
        "2023-06-30T17:30:00+07:00",
    ]
    assert [(e.line, e.message.split(";")[0]) for e in errors] == [
        (4, "column D (deadline): the number 45000 in a date column")
    ]
    _, errors = parse_targets(read_rows(path))
    assert [e.line for e in errors] == [2, 3, 4]
    assert "time zone is not known" in errors[0].message


def test_a_cell_past_the_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text(
        "code,name,level,parent_code\n01,Hà Nội,1,,a@b.vn\n001,Ba Đình, Hà Nội,2,01\n"
        "002,Hoàn Kiếm,2,01,,\n",
        encoding="utf-8",
    )
    units, errors = parse_units(read_rows(path))
    assert [u.code for u in units] == ["002"]  # empty trailing cells are no cells
    assert [str(e) for e in errors] == [
        "line 2: column E: a cell past the header's columns ('a@b.vn'); quote a value that "
        "holds a comma",
        "line 3: column E: a cell past the header's columns ('01'); quote a value that holds "
        "a comma",
    ]


def test_a_repeated_header_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text("code,name,level,parent_code,Level\n01,Hà Nội,1,,2\n", encoding="utf-8")
    with pytest.raises(SheetError, match=r"line 1: column 'level' repeats \(columns C and E\)"):
        parse_units(read_rows(path))


def test_a_file_that_is_not_utf8_is_one_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_bytes("code,name,type,level,parent_code\n01,Hà Nam,tp,1,\n".encode("cp1258"))
    with pytest.raises(SheetError) as caught:
        list(read_rows(path))
    assert str(caught.value) == (
        f"{path}: not UTF-8 text (byte 0xe0 on line 2); save it as UTF-8 (Excel: Save As "
        "'CSV UTF-8'; a byte order mark is allowed)"
    )
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + "code,name,level\n01,Hà Nội,1\n".encode())
    assert [dict(r) for _, r in read_rows(bom)] == [{"code": "01", "name": "Hà Nội", "level": "1"}]


def test_a_semicolon_separated_file_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text("code;name;type;level;parent_code\n01;Hà Nội;tp;1;\n", encoding="utf-8-sig")
    with pytest.raises(SheetError, match="separated by semicolons; save it with commas"):
        list(read_rows(path))


def test_a_missing_file_or_not_a_workbook_is_one_error(tmp_path: Path) -> None:
    for name in ("missing.csv", "missing.xlsx"):
        with pytest.raises(SheetError, match=f"{name}: "):
            list(read_rows(tmp_path / name))
    fake = tmp_path / "fake.xlsx"
    fake.write_text("code,name\n", encoding="utf-8")
    with pytest.raises(SheetError, match=r"fake.xlsx: not an Excel workbook \(.xlsx\)"):
        list(read_rows(fake))


text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=12
)


@settings(max_examples=40, deadline=None)
@given(names=st.lists(text.filter(lambda s: s.strip()), min_size=1, max_size=5))
def test_nfd_and_nfc_files_read_the_same(
    tmp_path_factory: pytest.TempPathFactory, names: list[str]
) -> None:
    folder = tmp_path_factory.mktemp("nfd")
    body = "code,name,level,parent_code\n" + "".join(
        f'0{i},"{n.replace(chr(34), "")}",1,\n' for i, n in enumerate(names)
    )
    read = []
    for form in ("NFC", "NFD"):
        path = folder / f"{form}.csv"
        path.write_text(unicodedata.normalize(form, body), encoding="utf-8")
        read.append([dict(r) for _, r in read_rows(path)])
    assert read[0] == read[1]
    for row in read[0]:
        assert row["name"] == unicodedata.normalize("NFC", row["name"])


def test_the_admin_bodies_keep_names_as_nfc() -> None:
    nfd = unicodedata.normalize("NFD", "Phường Phúc Xá")
    assert nfd != "Phường Phúc Xá"
    unit = UnitIn.model_validate(
        {"code": "00004", "name": nfd, "type": nfd, "level": 3, "parent_code": "001"}
    )
    assert unit.name == unit.type == "Phường Phúc Xá"
    assert UnitIn(code="01", name="x", level=1, chief_name=nfd).chief_name == "Phường Phúc Xá"
    campaign = CampaignIn.model_validate(
        {
            "name": nfd,
            "starts_at": "2025-01-01T00:00:00+07:00",
            "deadline": "2025-02-01T00:00:00+07:00",
            "indicators": ["cccd_collected"],
        }
    )
    assert campaign.name == "Phường Phúc Xá"


def test_a_tree_saved_as_nfd_continues_every_version(tmp_path: Path) -> None:
    """The version planner compares names as NFC: also against a version stored, before
    names were normalised, in the other form."""
    tree = (
        "code,name,type,level,parent_code\n01,Thành phố Hà Nội,tp,1,\n"
        "001,Quận Ba Đình,quận,2,01\n00004,Phường Phúc Xá,phường,3,001\n"
    )
    path = tmp_path / "v.csv"
    path.write_text(unicodedata.normalize("NFD", tree), encoding="utf-8")
    units, errors = parse_tree_units(read_rows(path))
    assert errors == []
    for form in ("NFC", "NFD"):
        stored = [
            StoredVersion(
                u.code,
                u.code,
                unicodedata.normalize(form, u.name),
                unicodedata.normalize(form, u.type),
                u.level,
                u.parent_code,
                None,
            )
            for u in units
        ]
        rows = [
            # the rows as the API would get them without the sheet reader: NFD
            TreeRow(
                i,
                u.code,
                unicodedata.normalize("NFD", u.name),
                u.type,
                u.level,
                u.parent_code,
            )
            for i, u in enumerate(units)
        ]
        plan = plan_version(stored, rows, [], date(2027, 1, 1), 90)
        assert isinstance(plan, VersionPlan), plan
        assert (sorted(plan.continued), plan.opened, plan.closed) == (
            ["00004", "001", "01"],
            (),
            (),
        )
    assert parse_crosswalk([]) == ([], [])
