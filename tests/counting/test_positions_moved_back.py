"""`Positions.moved_back`: a partition is behind exactly when PostgreSQL holds a smaller
next offset than the replica does (a partition it has no stored row for counts from 0),
whatever else the replica holds or the database stores."""

from hypothesis import given
from hypothesis import strategies as st

from services.aggregator.lag import Positions, PositionsMovedBack

offsets = st.dictionaries(st.integers(0, 11), st.integers(0, 10**12), max_size=12)


@given(held=offsets, stored=offsets)
def test_behind_exactly_where_the_stored_offset_is_smaller(
    held: dict[int, int], stored: dict[int, int]
) -> None:
    positions = Positions()
    positions.assigned(held)
    moved = positions.moved_back(stored)
    for p, h in held.items():
        s = stored.get(p, 0)
        assert (p in moved) == (s < h)
        if p in moved:
            assert moved[p] == (s, h)
    assert set(moved) <= set(held)


def test_a_rebuilds_reset_reads_as_moved_back_and_names_each_partition() -> None:
    positions = Positions()
    positions.assigned({0: 4000, 1: 12})
    positions.committed({1: 30})
    assert positions.moved_back({0: 4000, 1: 30}) == {}
    moved = positions.moved_back({0: 75, 1: 30})
    assert moved == {0: (75, 4000)}
    assert "partition 0 at 75 (held 4000)" in str(PositionsMovedBack(moved))
    positions.revoked([0])
    assert positions.moved_back({0: 75, 1: 30}) == {}
    # no stored row: nothing applied, the partition replays from its start
    assert positions.moved_back({0: 75}) == {1: (0, 30)}
