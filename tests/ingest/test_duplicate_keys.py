"""The count that rules out repeated keys cheaply (`services.ingest.duplicates`) never
misses one an event or the body names, colons and escaped colons anywhere included, and
names no other: over bodies drawn to put colons where the count could be fooled."""

import json

import orjson
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.duplicates import duplicate_key_errors


def _event_objects() -> st.SearchStrategy[list[tuple[str, str]]]:
    keys = st.sampled_from(["value", "unit", "a:b", ":", "é", "\\u003a", "x\\u003Ay", "x:y"])
    values = st.sampled_from(['"0:1"', '"\\u003a"', "1", '[1, {"k": 2}]', "null", '"t"'])
    return st.lists(st.tuples(keys, values), max_size=6)


@given(st.lists(_event_objects(), min_size=1, max_size=4), st.booleans())
def test_every_repeated_key_of_an_event_is_found_and_no_other(
    objects: list[list[tuple[str, str]]], single: bool
) -> None:
    def text(members: list[tuple[str, str]]) -> str:
        return "{" + ", ".join(f'"{k}": {v}' for k, v in members) + "}"

    if single:
        objects = objects[:1]
        raw = text(objects[0]).encode()
    else:
        raw = ('{"events": [' + ", ".join(text(o) for o in objects) + "]}").encode()
    expected = set()
    for index, members in enumerate(objects):
        names = [json.loads(f'"{k}"') for k, _ in members]
        expected |= {(index, n) for n in names if names.count(n) > 1}
    # (an object nested in a value repeats no key here: a field holding one is refused)
    found = {(e.index, e.field) for e in duplicate_key_errors(raw, orjson.loads(raw))}
    assert found == expected


def test_an_ordinary_batch_is_settled_by_the_count_alone() -> None:
    # colons in every time and in ids, non-ASCII, escapes other than of a colon
    from services.ingest.duplicates import _may_repeat

    events = [
        {
            "event_id": f"vneid:2026-03-01:{i}",
            "unit": "00004",
            "indicator": "cccd_collected",
            "occurred_at": "2026-03-01T08:30:00.123+07:00",
            "note": 'tên "Hà Nội"\n',
        }
        for i in range(50)
    ]
    raw = orjson.dumps({"events": events})
    assert b"\\" in raw
    assert not _may_repeat(raw, orjson.loads(raw))
