"""The messages between services keep every field across the wire: what the aggregator
publishes on `unit-progress` and ingest on `progress-events` is what their readers get,
also from a record written by the bindings directly (an older producer)."""

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from tiendo.events import progress_event, unit_progress
from tiendo.events.progress_event import Event, Kind, UndecodableEvent
from tiendo.events.timestamps import datetime_of, timestamp
from tiendo.events.unit_progress import UnitProgress
from tiendo.events.v1 import events_pb2

AT = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)


def _update(**changes: object) -> UnitProgress:
    fields: dict[str, object] = {
        "campaign_id": "ml01",
        "unit": "00004",
        "indicator": "cccd_collected",
        "value": 1250,
        "baseline": 100,
        "target": 5000,
        "starts_at": AT - timedelta(days=21),
        "deadline": AT + timedelta(days=30),
        "last_event_at": AT - timedelta(minutes=3),
        "computed_at": AT,
        "behind_threshold": 0.85,
        "stale_after": timedelta(hours=6),
        "level": 3,
        "parent": "001",
        "unit_name": "Phường Phúc Xá",
        "timezone": "Asia/Ho_Chi_Minh",
    }
    fields.update(changes)
    return UnitProgress(**fields)  # type: ignore[arg-type]


def test_a_unit_progress_update_reads_back_as_it_was_sent() -> None:
    for update in (_update(), _update(last_event_at=None, parent=None, level=1)):
        assert unit_progress.decode(unit_progress.encode(update)) == update
        assert update.key == f"ml01/{update.unit}/cccd_collected".encode()


def test_a_record_built_by_the_bindings_reads_as_the_same_update() -> None:
    message = events_pb2.UnitProgress(
        campaign_id="ml01",
        unit="00004",
        indicator="cccd_collected",
        value=1250,
        baseline=100,
        target=5000,
        starts_at=timestamp(AT - timedelta(days=21)),
        deadline=timestamp(AT + timedelta(days=30)),
        last_event_at=timestamp(AT - timedelta(minutes=3)),
        computed_at=timestamp(AT),
        behind_threshold=0.85,
        stale_after_seconds=6 * 3600,
        level=3,
        parent="001",
        unit_name="Phường Phúc Xá",
        timezone="Asia/Ho_Chi_Minh",
    )
    assert unit_progress.decode(message.SerializeToString()) == _update()


def test_a_progress_event_reads_back_with_its_offset_and_source() -> None:
    hanoi = timezone(timedelta(hours=7))
    event = Event(
        event_id="w4-1",
        unit="00004",
        indicator="cccd_collected",
        kind=Kind.SNAPSHOT,
        value=1250,
        occurred_at=AT.astimezone(hanoi),
        subject=None,
        received_at=AT,
        source="vneid-hanoi",
    )
    back = progress_event.decode(progress_event.encode(event))
    assert back == event
    assert back.occurred_at.utcoffset() == timedelta(hours=7)
    assert progress_event.from_message(progress_event.to_message(event, source="x")).source == "x"


ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=7)), timezone(timedelta(hours=-3, minutes=-30))]
)
MOMENTS = st.datetimes(
    min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1), timezones=ZONES
)


@given(MOMENTS)
def test_a_timestamp_is_the_moment_to_the_microsecond_before_1970_too(at: datetime) -> None:
    ts = timestamp(at)
    assert 0 <= ts.nanos < 1_000_000_000
    assert datetime_of(ts) == at


@given(
    st.lists(
        st.builds(
            Event,
            event_id=st.text("abc-1", min_size=1, max_size=8),
            unit=st.sampled_from(["00004", "001"]),
            indicator=st.sampled_from(["cccd_collected", "eid_activated_l2"]),
            kind=st.sampled_from(Kind),
            value=st.integers(-(2**63), 2**63 - 1),
            occurred_at=MOMENTS,
            subject=st.none() | st.just("ab" * 32),
            # a request's events share one moment of receipt; these may not, or have none
            received_at=st.none() | st.sampled_from([AT, AT + timedelta(microseconds=1)]),
            source=st.text(max_size=5),
        ),
        max_size=12,
    ),
    st.text(max_size=8),
)
def test_a_requests_records_read_back_as_each_event_encoded_alone(
    events: list[Event], source: str
) -> None:
    records = progress_event.encode_all(events, source=source)
    alone = [progress_event.encode(e, source=source) for e in events]
    # (drawn past the contract's rules too: such a record is refused alike, as the one alone)
    assert [_read(r) for r in records] == [_read(a) for a in alone]
    read = [r for r in map(_read, records) if isinstance(r, Event)]
    assert [r.source for r in read] == [source] * len(read)


def _read(record: bytes) -> Event | str:
    """The event a record decodes to, or the reason it is refused."""
    try:
        return progress_event.decode(record)
    except UndecodableEvent as exc:
        return str(exc)
