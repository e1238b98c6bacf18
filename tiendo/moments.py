"""The moments and days a request may name (an `as_of`, a deadline, a silence's end, a
cut-over day): with an offset, and within years this domain has.

A datetime holds years 1 to 9999 only, and the reads do arithmetic on what they are
given: a week before an `as_of`, the moment in UTC that the database is sent, a local
midnight. `0001-01-01T00:00:00+01:00` is valid RFC 3339, yet it is in year 0 once in UTC,
and each of those steps raised OverflowError: a 500 for a bad request, on every route that
took a time. The bounds leave centuries on both sides for that arithmetic, and refuse
nothing a campaign could mean.
"""

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_RANGE = f"must lie between the years {EARLIEST:%Y} and {LATEST:%Y}"


def as_text(value: object) -> object:
    """Refuse a number for a moment: pydantic would read 0 as 1970-01-01 (Unix time)."""
    if isinstance(value, int | float):
        raise ValueError("must be RFC 3339 text")
    return value


def checked_moment(value: datetime) -> datetime:
    """`value` if it has an offset and lies in [EARLIEST, LATEST]; else ValueError."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("needs an offset")
    # (aware datetimes compare without converting either, so this cannot overflow)
    if not EARLIEST <= value <= LATEST:
        raise ValueError(_RANGE)
    return value


def checked_day(value: date) -> date:
    """`value` if it lies in the years of `checked_moment`; else ValueError."""
    if not EARLIEST.date() <= value <= LATEST.date():
        raise ValueError(_RANGE)
    return value


# A request's moment: RFC 3339 with an offset, in range (422 naming the field otherwise).
Moment = Annotated[datetime, BeforeValidator(as_text), AfterValidator(checked_moment)]
# A request's day (YYYY-MM-DD), in range.
Day = Annotated[date, BeforeValidator(as_text), AfterValidator(checked_day)]
