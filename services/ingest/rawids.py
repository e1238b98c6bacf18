"""What looks like a raw identity number, in any text a client sends (docs/ingest.md,
*Privacy*). Pure: the validator asks it of every string field, the CLI of token names.

Vietnamese identity numbers are 9 digits (CMND) or 12 (CCCD, new CMND); mobile numbers,
personal data too, are 10 or 11. So 9 to 12 digits, in two places:

- the whole value, once the separators people type inside such numbers are removed
  ("001 203 004567", "001-203-004.567");
- a run inside a longer value ("evt-001203004567"), where a run is digits joined by at
  most single spaces or dots (the written forms "001 203 004 567", "001.203.004.567") and
  stands alone: next to a separator or an end, never glued to a letter or digit.

Why not any 9-12 digits anywhere: keyed hashes and other hex ids are letters and digits
mixed, and about a quarter of 64-hex subjects hold a 9-12 digit stretch between two
letters; a run glued to letters is part of such a token, not a number someone typed. A
canonical UUID is skipped whole: its last group is all digits once in about 280 UUIDs.
Dates and times (2024-06-01T08:30:00, 20240601T083000Z) make runs of 8 or fewer; Unix
milliseconds (13) pass, Unix seconds (10 digits, like a phone number) do not.
"""

import re

# Separators people type inside identity numbers ("001 203 004567", "001-203-004567").
_ID_SEPARATORS = re.compile(r"[\s.\-_/]")
_RUN = re.compile(r"(?<![0-9A-Za-z])[0-9](?:[ .]?[0-9])*(?![0-9A-Za-z])")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
MIN_DIGITS = 9
MAX_DIGITS = 12
# Both rules need at least MIN_DIGITS decimal digits (`\d` and `isdecimal` are the same
# Unicode category, Nd): most values have fewer, and this one scan settles them.
_ENOUGH_DIGITS = re.compile(rf"(?:\D*\d){{{MIN_DIGITS}}}")


def looks_like_raw_id(text: str) -> bool:
    """Whether `text` is, separators aside, a 9-12 digit number (a CMND or CCCD number)."""
    digits = _ID_SEPARATORS.sub("", text)
    return MIN_DIGITS <= len(digits) <= MAX_DIGITS and digits.isdecimal()


def contains_raw_id(text: str) -> bool:
    """Whether `text` is a raw ID number or holds one as a run of its own (module doc)."""
    if _ENOUGH_DIGITS.match(text) is None:
        return False
    if looks_like_raw_id(text):
        return True
    for run in _RUN.finditer(_UUID.sub("-", text)):
        if MIN_DIGITS <= sum(c.isdigit() for c in run.group()) <= MAX_DIGITS:
            return True
    return False
