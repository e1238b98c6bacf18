"""The moments and days a request may name (an `as_of`, a deadline, a silence's end, a
cut-over day): with an offset, and within years this domain has.

A datetime holds years 1 to 9999 only, and the reads do arithmetic on what they are
given: a week before an `as_of`, the moment in UTC that the database is sent, a local
midnight. `0001-01-01T00:00:00+01:00` is valid RFC 3339, yet it is in year 0 once in UTC,
and each of those steps raised OverflowError: a 500 for a bad request, on every route that
took a time. The bounds leave centuries on both sides for that arithmetic, and refuse
nothing a campaign could mean.
"""

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_RANGE = f"must lie between the years {EARLIEST:%Y} and {LATEST:%Y}"


# RFC 3339's date-time (its `T` may be `t` or a space, section 5.6's note) and full-date.
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def _written_as(shape: re.Pattern[str], what: str) -> Callable[[object], object]:
    def check(value: object) -> object:
        # pydantic reads a number, or text that is one (a query parameter always is
        # text), as Unix time: `?as_of=1712345678` answered as of 2024, `-1` as of 1969;
        # and it takes ISO 8601 forms RFC 3339 has not (no seconds, `+0700`)
        if isinstance(value, int | float | str | bytes) and not (
            isinstance(value, str) and shape.fullmatch(value)
        ):
            raise ValueError(f"must be {what}")
        return value

    return check


as_text = _written_as(_DATE_TIME, "RFC 3339 text, e.g. 2025-07-01T08:00:00+07:00")
as_day = _written_as(_FULL_DATE, "a day as YYYY-MM-DD")


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
Day = Annotated[date, BeforeValidator(as_day), AfterValidator(checked_day)]
