"""Events of one request that share an `event_id` (docs/ingest.md, *Repeats*). Pure.

An exact repeat (same content hash, `tiendo.counting.content`) is the same event sent
twice, e.g. two retries merged into one batch: the first is published, the others are
reported as duplicates of it. The same id with different content is a conflict: every
event of that id is refused and reported, the rest of the request accepted. Keeping the
first instead would let the order inside a batch pick which version counts; refusing all
of them leaves the choice to the client, which alone knows which one is right.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from tiendo.counting.content import content_hash
from tiendo.event import Event


@dataclass(frozen=True, slots=True)
class Duplicate:
    index: int
    duplicate_of: int


@dataclass(frozen=True, slots=True)
class Conflict:
    index: int
    # another event of the same id (the first other one: a response stays small however
    # many there are)
    conflicts_with: int


@dataclass(slots=True)
class Sorted:
    """A request's events: those to publish, and the repeats left out (by index)."""

    publish: list[Event] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)


def sort_repeats(events: Sequence[Event]) -> Sorted:
    """Split `events` (indexed as in the request) into what to publish and its repeats."""
    if len({event.event_id for event in events}) == len(events):
        return Sorted(list(events))  # no repeats, as in nearly every request
    by_id: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        by_id.setdefault(event.event_id, []).append(index)
    conflicting = {
        event_id
        for event_id, same_id in by_id.items()
        if len(same_id) > 1 and len({content_hash(events[i]) for i in same_id}) > 1
    }
    out = Sorted()
    for index, event in enumerate(events):
        same_id = by_id[event.event_id]
        if event.event_id in conflicting:
            other = same_id[1] if index == same_id[0] else same_id[0]
            out.conflicts.append(Conflict(index, other))
        elif index == same_id[0]:
            out.publish.append(event)
        else:
            out.duplicates.append(Duplicate(index, same_id[0]))
    return out
