"""Repeats inside one request (issue 16): an exact repeat is accepted once, the same
event_id with other content is a conflict for every event of that id, and nothing else of
the request is lost."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from services.ingest.repeats import Conflict, Duplicate, sort_repeats
from tiendo.counting.content import content_hash
from tiendo.event import Event, Kind

AT = datetime(2023, 6, 1, 8, 0, tzinfo=UTC)


def ev(event_id: str, value: int = 1, **changes: object) -> Event:
    base = Event(event_id, "00004", "cccd_collected", Kind.INCREMENT, value, AT)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_an_exact_repeat_is_accepted_once_and_reported_as_a_duplicate() -> None:
    out = sort_repeats([ev("a"), ev("b"), ev("a"), ev("a")])
    assert [e.event_id for e in out.publish] == ["a", "b"]
    assert out.duplicates == [Duplicate(2, 0), Duplicate(3, 0)]
    assert out.conflicts == []


def test_one_id_with_other_content_is_refused_whole_and_the_rest_accepted() -> None:
    out = sort_repeats([ev("a"), ev("b"), ev("a", 2), ev("a")])
    assert [e.event_id for e in out.publish] == ["b"]
    assert out.conflicts == [Conflict(0, 2), Conflict(2, 0), Conflict(3, 0)]
    assert out.duplicates == []


def test_same_content_is_every_field_but_delivery_details() -> None:
    base = ev("a", subject="ab" * 32)
    ict = base.occurred_at.astimezone(timezone(timedelta(hours=7)))
    same = [
        replace(base, occurred_at=ict),  # the same instant, written in local time
        replace(base, received_at=AT + timedelta(hours=1)),
        replace(base, source="another-token"),
    ]
    assert {content_hash(e) for e in same} == {content_hash(base)}
    other = [
        replace(base, unit="00005"),
        replace(base, indicator="eid_activated_l2"),
        replace(base, kind=Kind.SNAPSHOT),
        replace(base, value=2),
        replace(base, occurred_at=AT + timedelta(microseconds=1)),
        replace(base, subject=None),
        replace(base, subject="cd" * 32),
        replace(base, event_id="b"),
    ]
    assert len({content_hash(e) for e in [base, *other]}) == len(other) + 1


requests = st.lists(
    st.builds(ev, st.sampled_from("abcd"), st.sampled_from([1, 1, 1, 2])), max_size=30
)


@given(requests)
def test_every_event_is_published_or_reported_once(events: list[Event]) -> None:
    out = sort_repeats(events)
    reported = [d.index for d in out.duplicates] + [c.index for c in out.conflicts]
    assert len(out.publish) + len(reported) == len(events)
    assert len(set(reported)) == len(reported)
    published = [e.event_id for e in out.publish]
    assert len(set(published)) == len(published)
    for event_id in {e.event_id for e in events}:
        versions = {content_hash(e) for e in events if e.event_id == event_id}
        # an id is published (once) exactly when all its events agree
        assert (event_id in published) == (len(versions) == 1)
    for d in out.duplicates:
        assert events[d.index] == events[d.duplicate_of]
        assert d.duplicate_of < d.index
    for c in out.conflicts:
        assert events[c.index].event_id == events[c.conflicts_with].event_id
        assert c.index != c.conflicts_with


@given(requests, st.randoms())
def test_what_is_published_does_not_depend_on_the_order_in_the_request(
    events: list[Event], rng: object
) -> None:
    shuffled = list(events)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert set(sort_repeats(events).publish) == set(sort_repeats(shuffled).publish)
