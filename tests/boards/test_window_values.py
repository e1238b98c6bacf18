"""The metric snapshot's cache of values one run-rate window ago."""

from datetime import UTC, datetime, timedelta

from tiendo.board.window import WindowValues

NOW = datetime(2026, 6, 1, 8, tzinfo=UTC)
PAIR = ("c1", "cccd_collected")


def test_values_are_reused_until_they_are_older_than_max_age() -> None:
    cache = WindowValues(timedelta(minutes=5))
    assert not cache.fresh(PAIR, ("a", "b"), NOW)
    cache.keep(PAIR, ("a", "b"), NOW, {"a": 1, "b": 2})
    assert cache.fresh(PAIR, ("a", "b"), NOW + timedelta(minutes=4, seconds=59))
    assert cache.get(PAIR) == {"a": 1, "b": 2}
    assert not cache.fresh(PAIR, ("a", "b"), NOW + timedelta(minutes=5))


def test_a_changed_set_of_units_or_another_pair_is_recomputed() -> None:
    cache = WindowValues(timedelta(minutes=5))
    cache.keep(PAIR, ("a", "b"), NOW, {"a": 1, "b": 2})
    assert not cache.fresh(PAIR, ("a", "b", "c"), NOW)
    assert not cache.fresh(("c1", "eid_activated_l2"), ("a", "b"), NOW)


def test_max_age_zero_always_recomputes() -> None:
    cache = WindowValues(timedelta(0))
    cache.keep(PAIR, ("a",), NOW, {"a": 1})
    assert not cache.fresh(PAIR, ("a",), NOW)
