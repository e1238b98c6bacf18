"""The events this ingest replica answered 202 for lately, in memory: what lets
`GET /v1/events/{event_id}` say `accepted` before the aggregator has stored an event,
without a write on the request's path. Per replica and bounded: an event accepted by
another replica, or long ago, is known by the aggregator's tables instead."""

from collections import OrderedDict
from collections.abc import Sequence

from tiendo.event import Event

DEFAULT_CAPACITY = 100_000


class RecentlyAccepted:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def remember(self, events: Sequence[Event]) -> None:
        seen = self._seen
        for event in events:
            if event.event_id in seen:  # a new key goes to the end already
                seen.move_to_end(event.event_id)
            seen[event.event_id] = (event.unit, event.indicator)
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)

    def get(self, event_id: str) -> tuple[str, str] | None:
        """(unit, indicator) of a recently accepted event, or None."""
        return self._seen.get(event_id)
