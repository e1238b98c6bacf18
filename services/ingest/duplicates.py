"""Keys an object of a JSON body names more than once (`{"value": 1, "value": 1000}`).

orjson, like Python's json, keeps the last value of a repeated key and says nothing, so
an upstream that writes two has a bug nobody would see: the event counted might not be
the one it meant. Ingest refuses such a body (422, naming the key and the event's index).

Looking at every object's keys as it is parsed (the standard library's
`object_pairs_hook`) would cost more than the parse itself. So the repeats are first
ruled out by a count: outside strings, JSON writes a colon between each key and its
value and nowhere else; `orjson.dumps` of what was parsed writes each key once, and every
string kept, colons included, as it was (orjson never escapes ":"). The body's colons
then outnumber the rewrite's only where a key was repeated (its colon and those of the
value dropped are gone), unless a string wrote a colon as the escape `\\u003a`, which the
parse turned into one. Only then is the body parsed again, slowly, to name the keys.
On a 1,000-event batch the count costs a small fraction of the parse (docs/ingest.md,
*What a request costs*).
"""

import json
from typing import Any

import orjson

from services.ingest.validation import FieldError, Limits, duplicate_keys, envelope

# `\u003a` or `\u003A`, a colon written as an escape (a few other characters too: rare)
_ESCAPED_COLON = b"\\u003"
# Only `envelope`'s reading of the body is wanted, not its batch-size check.
_ANY_SIZE = Limits()


class _Object(dict[str, Any]):
    """A parsed JSON object that knows which of its keys the body repeated."""

    __slots__ = ("repeated",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.repeated: list[str] = []
        if len(self) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen and key not in self.repeated:
                    self.repeated.append(key)
                seen.add(key)


def _may_repeat(raw: bytes, body: object) -> bool:
    try:
        written = orjson.dumps(body)
    except orjson.JSONEncodeError:
        return True  # nested deeper than orjson writes (254 levels): look the slow way
    if raw.count(b":") != written.count(b":"):
        return True
    # (a body without a backslash has no escape: one byte looked for, far cheaper)
    return b"\\" in raw and _ESCAPED_COLON in raw


def duplicate_key_errors(raw: bytes, body: object) -> list[FieldError]:
    """An error for each key the body's own object or one of its events names more than
    once; `body` is what orjson parsed of `raw`. An object nested inside an event's field
    is not looked into: a field holding one is refused for its own rule anyway."""
    if not _may_repeat(raw, body):
        return []
    try:
        again = json.loads(raw, object_pairs_hook=_Object, parse_int=len, parse_float=len)
    except (RecursionError, ValueError):
        # nested deeper than the standard parser goes (orjson goes to 1,024 levels): no
        # event is, so validation refuses the body whatever its keys
        return []
    errors: list[FieldError] = []
    if isinstance(again, _Object) and "events" in again:
        errors.extend(duplicate_keys(again.repeated, None))
    items, _ = envelope(again, _ANY_SIZE)
    for index, item in enumerate(items):
        if isinstance(item, _Object) and item.repeated:
            errors.extend(duplicate_keys(item.repeated, index))
    return errors
