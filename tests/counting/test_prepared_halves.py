"""`Prepared.halves`, split again and again down to single records (as `apply_isolating`
does), stores what the whole batch stores: every record once, each partition's records in
offset order, and each partition's next offset moving up to the whole batch's and never
past a record not yet applied."""

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.aggregator import ahead
from services.aggregator.prepared import Prepared
from services.aggregator.repository.positions import DeadLetter
from tiendo.counting.batch import STAGING_COLUMNS


def _row(partition: int, offset: int) -> tuple[Any, ...]:
    row: list[Any] = [None] * len(STAGING_COLUMNS)
    row[0], row[1], row[2] = f"e{partition}-{offset}", "00004", "cccd_collected"
    row[ahead.PARTITION], row[ahead.OFFSET] = partition, offset
    return tuple(row)


@st.composite
def batches(draw: st.DrawFn) -> Prepared:
    rows: list[tuple[Any, ...]] = []
    dead: list[DeadLetter] = []
    next_offsets: dict[int, int] = {}
    for p in draw(st.sets(st.integers(0, 5), min_size=1, max_size=4)):
        first = draw(st.integers(0, 1000))
        count = draw(st.integers(1, 12))
        # a record past the last one decoded (a tombstone skipped) moves the offset further
        trailing = draw(st.integers(0, 2))
        for o in range(first, first + count):
            if draw(st.booleans()) and draw(st.booleans()):
                dead.append(DeadLetter(p, o, None, "undecodable", b"x"))
            else:
                rows.append(_row(p, o))
        next_offsets[p] = first + count + trailing
    payloads = {(r[ahead.PARTITION], r[ahead.OFFSET]): b"p" for r in rows}
    return Prepared(len(rows) + len(dead), rows, payloads, dead, next_offsets)


def _applied_in_order(part: Prepared) -> list[Prepared]:
    halves = part.halves()
    if halves is None:
        return [part]
    return [p for h in halves for p in _applied_in_order(h)]


def _records(part: Prepared) -> list[tuple[int, int]]:
    return [(r[ahead.PARTITION], r[ahead.OFFSET]) for r in part.rows] + [
        (d.partition, d.offset) for d in part.dead
    ]


@given(batches())
def test_halves_down_to_single_records_store_what_the_whole_stores(part: Prepared) -> None:
    singles = _applied_in_order(part)
    assert all(s.records == 1 for s in singles)
    applied = [r for s in singles for r in _records(s)]
    assert sorted(applied) == sorted(_records(part))
    stored: dict[int, int] = {}
    for s in singles:
        (p, o), *_ = _records(s)
        # in order within the partition, and the stored offset never past this record
        assert stored.get(p, -1) <= o
        for q, n in s.next_offsets.items():
            stored[q] = max(stored.get(q, 0), n)
        assert stored[p] > o
        for r in s.rows:
            assert s.payloads[r[ahead.PARTITION], r[ahead.OFFSET]] == b"p"
    assert stored == part.next_offsets


def test_a_lone_event_becomes_its_dead_letter_with_the_offset_past_it() -> None:
    part = Prepared(1, [_row(2, 40)], {(2, 40): b"bytes"}, [], {2: 41})
    letter = part.unstorable(ValueError("x"))
    assert letter is not None
    assert letter.rows == []
    (d,) = letter.dead
    assert (d.partition, d.offset, d.event_id, d.payload) == (2, 40, "e2-40", b"bytes")
    assert d.reason == "cannot be stored: SQLSTATE ? (ValueError)"
    assert letter.next_offsets == {2: 41}
    assert Prepared(1, [], {}, [d], {2: 41}).unstorable(ValueError("x")) is None
