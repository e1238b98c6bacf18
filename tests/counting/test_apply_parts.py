"""A replica's round split into side-by-side transactions (services.aggregator.fetching):
whole partitions only, each exactly once, the work as even as whole partitions allow."""

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from services.aggregator.fetching import share_partitions

counts = st.dictionaries(
    st.builds(TopicPartition, st.sampled_from(["events", "other"]), st.integers(0, 40)),
    st.integers(0, 20_000),
    max_size=24,
)


@given(counts, st.integers(1, 6))
def test_every_partition_goes_to_exactly_one_part(
    records: dict[TopicPartition, int], ways: int
) -> None:
    groups = share_partitions(records, ways)
    dealt = [tp for g in groups for tp in g]
    assert sorted(dealt) == sorted(records)
    assert len(groups) == min(ways, len(records))
    assert all(groups)


@given(counts, st.integers(1, 6))
def test_the_parts_differ_by_at_most_one_partition_s_records(
    records: dict[TopicPartition, int], ways: int
) -> None:
    # largest first, each to the lightest: the heaviest part exceeds the lightest by at most
    # the largest partition it took (the round waits on the heaviest)
    groups = share_partitions(records, ways)
    if not groups:
        return
    sums = [sum(records[tp] for tp in g) for g in groups]
    assert max(sums) - min(sums) <= max(records.values())


@given(counts, st.integers(2, 6))
def test_a_partition_with_nothing_fetched_still_joins_a_part_to_be_topped_up_from(
    records: dict[TopicPartition, int], ways: int
) -> None:
    # the parts' sizes count partitions where records tie: the empty ones spread out, so
    # a part with nothing fetched yet still has a partition to take buffered records of
    empty = dict.fromkeys(records, 0)
    groups = share_partitions(empty, ways)
    sizes = [len(g) for g in groups]
    assert not sizes or max(sizes) - min(sizes) <= 1


def test_three_partitions_over_two_parts_pair_the_two_smallest() -> None:
    p = [TopicPartition("events", i) for i in range(3)]
    groups = share_partitions({p[0]: 9_000, p[1]: 5_000, p[2]: 4_000}, 2)
    assert groups == [[p[0]], [p[1], p[2]]]
    assert share_partitions({p[0]: 9_000, p[1]: 5_000, p[2]: 4_000}, 1) == [[p[0], p[1], p[2]]]
