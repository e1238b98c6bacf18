"""The charset a JSON body may declare in its Content-Type: UTF-8, or none.

JSON exchanged between systems is UTF-8 (RFC 8259 §8.1), and ingest reads the body's
bytes as UTF-8 whatever the header says. A body declared `charset=utf-16` or `latin-1`
was encoded that way by a client that believes the header is read: a UTF-16 body failed
as malformed JSON (400, naming no cause), and a Latin-1 body of ASCII letters only was
accepted, until the day one held a "ệ". Either is refused up front with 415 naming the
charset; `charset=utf-8` is accepted in any case, quoted or not (RFC 9110 §8.3.2), and
so is `utf8`, a common misspelling that means nothing else.
Other parameters mean nothing to JSON and are left alone.
"""

import re

from services.ingest.rawids import contains_raw_id

UTF8 = frozenset({"utf-8", "utf8"})
# A charset named in a 415 must be a plain token of the header grammar (RFC 9110 §5.6.2),
# short, and no raw ID number: the header is the client's and may hold anything.
_NAMEABLE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,40}")


def _named(charset: str) -> str:
    if _NAMEABLE.fullmatch(charset) and not contains_raw_id(charset):
        return f"charset={charset}"
    return "the charset named"


def refused_charset(content_type: str) -> str | None:
    """The detail of the 415 for a JSON Content-Type whose parameters name a charset other
    than UTF-8; None when they name none, or UTF-8."""
    if ";" not in content_type:
        return None
    for parameter in content_type.split(";")[1:]:
        name, equals, value = parameter.partition("=")
        if not equals or name.strip().lower() != "charset":
            continue
        charset = value.strip()
        if len(charset) >= 2 and charset[0] == charset[-1] == '"':
            charset = charset[1:-1]
        if charset.lower() not in UTF8:
            return (
                f"{_named(charset)} is not accepted: JSON is UTF-8 (RFC 8259); send the body "
                "in UTF-8, with charset=utf-8 or no charset"
            )
    return None
