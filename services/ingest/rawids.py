"""What looks like a raw identity number, in any text a client sends (docs/ingest.md,
*Privacy*). Pure: the validator asks it of every string field, the CLI of token names.

Vietnamese identity numbers are 9 digits (CMND) or 12 (CCCD, new CMND); mobile numbers,
personal data too, are 10 or 11. So 9 to 12 digits, in two places:

- the whole value, once the separators people type inside such numbers are removed
  ("001 203 004567", "001-203-004.567");
- a number standing alone inside a longer value: nothing but a separator or an end right
  before and after it, never a letter or digit. A number is one of
  - a run of 9 to 12 digits ("evt-001203004567.1", "vneid:036094123:1");
  - digits joined by single spaces or dots, 9 to 12 in all ("001 203 004567",
    "0912.345.678.9");
  - groups of 3 or 4 digits joined by single dashes, dots or spaces, the last of 3, 4 or 6
    digits, 9 or more in all ("cccd-001-203-004567", "0912-345-678-1"): how people
    write CCCD and phone numbers.

Why not any 9-12 digits anywhere: keyed hashes and other hex ids are letters and digits
mixed, and about a quarter of 64-hex subjects hold a 9-12 digit stretch between two
letters; a run glued to letters is part of such a token, not a number someone typed. A
canonical UUID is skipped whole: its last group is all digits once in about 280 UUIDs.
Why at most 12 in a run but no upper bound for groups: a run of 13 or more is a counter or
Unix milliseconds, while a written number followed by one more group ("…-004567-123") is
still the number. Why dash-joined groups only of 3, 4 or (last) 6 digits: dashes join the
parts of compound keys too, and those parts here are dates (2024-06-01: groups of 2), unit
codes (01, 001, 00004: the wards' 5), times (093015: 6, then a counter) — none a written
identity number. Dates and times in ISO 8601 (2024-06-01T08:30:00, 20240601T083000Z) make
no such number; Unix milliseconds (13) pass, Unix seconds (10 digits, like a phone
number) do not.
"""

import re

# Separators people type inside identity numbers ("001 203 004567", "001-203-004567").
_ID_SEPARATORS = re.compile(r"[\s.\-_/]")
# A number standing alone: no ASCII letter or digit (of any script) right before or after.
_ALONE_BEFORE = r"(?<![A-Za-z\d])"
_ALONE_AFTER = r"(?![A-Za-z\d])"
_GROUP = r"\d{3,4}"
# Each shape of the module doc, matched apart: one pattern of alternatives would let a
# short match of one shape hide a longer one of another starting at the same place.
# With each, the most digits such a number has (None: no bound): digits joined by spaces
# or dots with more than 12 in all are a date and a counter (`evt.20240601.000123`), Unix
# milliseconds and a counter (`e.1717230600123.1`), not a number someone wrote.
_NUMBERS = tuple(
    (re.compile(_ALONE_BEFORE + shape + _ALONE_AFTER), most)
    for shape, most in (
        (r"\d{9,12}", None),
        (r"\d+(?:[ .]\d+)+", 12),
        (rf"{_GROUP}(?:[-. ]{_GROUP})*[-. ](?:{_GROUP}|\d{{6}})", None),
    )
)
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
MIN_DIGITS = 9
MAX_DIGITS = 12
# Every rule needs at least MIN_DIGITS decimal digits (`\d` and `isdecimal` are the same
# Unicode category, Nd): most values have fewer, and this one scan settles them.
_ENOUGH_DIGITS = re.compile(rf"(?:\D*\d){{{MIN_DIGITS}}}")


def looks_like_raw_id(text: str) -> bool:
    """Whether `text` is, separators aside, a 9-12 digit number (a CMND or CCCD number)."""
    digits = _ID_SEPARATORS.sub("", text)
    return MIN_DIGITS <= len(digits) <= MAX_DIGITS and digits.isdecimal()


def contains_raw_id(text: str) -> bool:
    """Whether `text` is a raw ID number or holds one standing alone (module doc)."""
    if _ENOUGH_DIGITS.match(text) is None:
        return False
    if looks_like_raw_id(text):
        return True
    searched = _UUID.sub("-", text)
    return any(
        MIN_DIGITS <= sum(c.isdecimal() for c in number.group()) <= (most or len(searched))
        for pattern, most in _NUMBERS
        for number in pattern.finditer(searched)
    )
