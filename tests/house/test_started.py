"""A started service sets its startup objects aside from the garbage collector
(`tiendo.lifespan.started`, `collect_for_serving`): what is garbage by then is
collected first, not kept for good, and what the service creates afterwards is still
collected, its young objects in larger steps."""

import gc
import weakref

from structlog.testing import capture_logs

from tiendo.lifespan import YOUNG_GENERATION_THRESHOLD, started


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> "weakref.ref[_Node]":
    """A reference cycle, dropped: only the collector frees it."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_startup_objects_are_frozen_and_garbage_is_collected_first() -> None:
    gc.disable()  # no collection but the ones under test
    threshold = gc.get_threshold()
    # Python's default: a service started earlier in this session may have raised it
    gc.set_threshold(700, *threshold[1:])
    try:
        kept = _Node()
        kept.other = kept
        dropped = _cycle()
        assert dropped() is not None
        with capture_logs() as logs:
            started("example", port=1)
        assert dropped() is None  # collected, not frozen
        assert gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects())  # set aside, not walked
        # (the count is the frozen objects still alive: fewer once temporaries are freed)
        assert [(e["event"], e["port"], e["frozen_objects"] > 1000) for e in logs] == [
            ("example_started", 1, True)
        ]
        assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *threshold[1:])  # not 700
        later = _cycle()
        gc.collect()
        assert later() is None  # created after: collected as before
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        gc.enable()
