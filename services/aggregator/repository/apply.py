"""Applying events: the live form of the counting rules lives in `tiendo.counting` (one
room with the recount and `as_of`); these are the aggregator's names for it."""

from tiendo.counting import apply_events, prepare
from tiendo.counting.batch import LOCK_REPLAN

__all__ = ["LOCK_REPLAN", "apply_events", "prepare"]
