"""Reading a spreadsheet (CSV or XLSX) of chiefs' contacts: one row per unit and channel,
`unit,chief_name,channel,address,language`. A row with no channel only names the chief.

Every row is checked before anything is sent; one bad row means nothing is imported, and
the report names every bad row by its line. Each unit in the file gets exactly the
contacts its rows list (the API's replacement); units not in the file keep theirs."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.notifier.contacts import (
    CHANNEL_PATTERN,
    UNIT_PATTERN,
    ContactIn,
    UnitContactsItem,
)
from services.notifier.languages import Language
from tiendo.addresses import address_problem
from tiendo.sheets import RowError, parse_rows

COLUMNS = ("unit", "chief_name", "channel", "address", "language")


class ContactRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: str = Field(pattern=UNIT_PATTERN)
    chief_name: str | None = Field(None, max_length=200)
    channel: str | None = Field(None, pattern=CHANNEL_PATTERN)
    address: str | None = Field(None, max_length=2000)
    language: Language | None = None

    @model_validator(mode="after")
    def _contact_is_whole(self) -> "ContactRow":
        if (self.channel is None) != (self.address is None):
            raise ValueError("channel and address go together")
        if self.channel is None and self.language is not None:
            raise ValueError("a language belongs to a contact (channel and address)")
        if self.channel and self.address and (why := address_problem(self.channel, self.address)):
            raise ValueError(f"address: {why} (channel {self.channel})")
        return self


@dataclass
class _Unit:
    line: int
    chief_name: str | None = None
    chief_line: int = 0
    contacts: list[tuple[int, ContactIn]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Parsed:
    """The units to send, and the file's line of each unit and each of its contacts."""

    units: list[UnitContactsItem]
    unit_lines: list[int]
    contact_lines: list[list[int]]

    def line_of(self, problem: dict[str, Any]) -> int | None:
        """The file's line a server's problem (`index`, `field`) is about."""
        index, where = problem.get("index"), str(problem.get("field") or "").split(".")
        if not isinstance(index, int) or not 0 <= index < len(self.units):
            return None
        if where[0] == "contacts" and len(where) > 1 and where[1].isdigit():
            return self.contact_lines[index][int(where[1])]
        return self.unit_lines[index]


def parse_contacts(
    rows: Iterable[tuple[int, dict[str, str]]], tick: Callable[[], object] = lambda: None
) -> tuple[Parsed, list[RowError]]:
    units: dict[str, _Unit] = {}
    errors: list[RowError] = []
    for line, cells in rows:
        checked, problems = parse_rows([(line, cells)], ContactRow, COLUMNS, tick)
        if problems:
            errors += problems
            continue
        row = checked[0]
        unit = units.setdefault(row.unit, _Unit(line))
        if row.chief_name:
            if unit.chief_name not in (None, row.chief_name):
                errors.append(RowError(line, f"chief_name differs from line {unit.chief_line}'s"))
            elif unit.chief_name is None:
                unit.chief_name, unit.chief_line = row.chief_name, line
        if row.channel and row.address:
            seen = {c.channel: at for at, c in unit.contacts}
            if row.channel in seen:
                errors.append(
                    RowError(line, f"{row.unit}/{row.channel} repeats line {seen[row.channel]}")
                )
                continue
            contact = ContactIn(channel=row.channel, address=row.address, language=row.language)
            unit.contacts.append((line, contact))
    parsed = Parsed(
        [
            UnitContactsItem(
                unit=code, chief_name=u.chief_name, contacts=[c for _, c in u.contacts]
            )
            for code, u in units.items()
        ],
        [u.line for u in units.values()],
        [[at for at, _ in u.contacts] for u in units.values()],
    )
    return parsed, sorted(errors, key=lambda e: e.line)
