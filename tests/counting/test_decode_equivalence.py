"""The consumer's cheaper decoding and content hash (`bench.decode_cost`) are the ones they
replaced: the same event, or the same refusal word for word (a dead letter's reason), for
any record; the same hash for any event (stored hashes are compared with redeliveries')."""

import hashlib
from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import example, given
from hypothesis import strategies as st

from tiendo.counting.content import content_hash
from tiendo.events import progress_event
from tiendo.events.progress_event import Event, Kind, UndecodableEvent
from tiendo.events.v1 import events_pb2

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PB_TO_KIND = {
    events_pb2.EVENT_KIND_INCREMENT: Kind.INCREMENT,
    events_pb2.EVENT_KIND_SNAPSHOT: Kind.SNAPSHOT,
}


def _reference_datetime_of(ts: Timestamp) -> datetime:
    return _EPOCH + timedelta(0, ts.seconds, ts.nanos // 1000)


def _reference_zone(seconds: int) -> timezone:
    return UTC if seconds == 0 else timezone(timedelta(seconds=seconds))


def _reference_decode(payload: bytes) -> Event:
    """`progress_event.decode` as it was before (commit 08d0d6b)."""
    message = events_pb2.ProgressEvent()
    try:
        message.ParseFromString(payload)
    except Exception as exc:
        raise UndecodableEvent(f"not a ProgressEvent: {exc}") from exc
    kind = _PB_TO_KIND.get(message.kind)
    if kind is None or not message.event_id or not message.unit or not message.indicator:
        raise UndecodableEvent("missing event_id, unit, indicator or kind")
    if not message.HasField("occurred_at"):
        raise UndecodableEvent("missing occurred_at")
    try:
        return Event(
            event_id=message.event_id,
            unit=message.unit,
            indicator=message.indicator,
            kind=kind,
            value=message.value,
            occurred_at=_reference_datetime_of(message.occurred_at).astimezone(
                _reference_zone(message.occurred_at_offset_seconds)
            ),
            subject=message.subject or None,
            received_at=(
                _reference_datetime_of(message.received_at)
                if message.HasField("received_at")
                else None
            ),
            source=message.source,
        )
    except (OverflowError, ValueError) as exc:
        raise UndecodableEvent(f"bad timestamp: {exc}") from exc


def _reference_content_hash(event: Event) -> bytes:
    """`content_hash` as it was before (commit 08d0d6b)."""
    encoded = "\x1f".join(
        (
            event.event_id,
            event.unit,
            event.indicator,
            event.kind.value,
            str(event.value),
            str((event.occurred_at - _EPOCH) // timedelta(microseconds=1)),
            event.subject or "",
        )
    ).encode()
    return hashlib.sha256(encoded).digest()


def _outcome(decode: object, payload: bytes) -> tuple[str, str]:
    """What a decoder makes of `payload`, every field and the zone spelled out."""
    try:
        event = decode(payload)  # type: ignore[operator]
    except UndecodableEvent as exc:
        return "refused", str(exc)
    return "event", repr(event)


# Around datetime's range and past it, and the 24-hour bound of a UTC offset.
SECONDS = st.integers(-(2**63), 2**63 - 1) | st.integers(-62_135_596_900, 253_402_300_900)
OFFSETS = st.integers(-(2**31), 2**31 - 1) | st.integers(-86_401, 86_401) | st.just(25_200)
TEXT = st.text(max_size=6)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    message = events_pb2.ProgressEvent(
        event_id=draw(TEXT),
        unit=draw(TEXT),
        indicator=draw(TEXT),
        kind=draw(st.integers(0, 3)),  # type: ignore[arg-type]
        value=draw(st.integers(-(2**63), 2**63 - 1)),
        occurred_at_offset_seconds=draw(OFFSETS),
        subject=draw(TEXT),
        source=draw(TEXT),
    )
    for name in ("occurred_at", "received_at"):
        if draw(st.booleans()):
            ts = getattr(message, name)
            ts.seconds = draw(SECONDS)
            ts.nanos = draw(st.integers(-(2**31), 2**31 - 1) | st.integers(0, 999_999_999))
    return message.SerializeToString()


AT = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
HANOI = timezone(timedelta(hours=7))


@given(messages() | st.binary(max_size=40))
@example(
    progress_event.encode(
        Event("e1", "00004", "cccd_collected", Kind.INCREMENT, 2, AT.astimezone(HANOI))
    )
)
@example(
    progress_event.encode(
        Event("e1", "0", "i", Kind.SNAPSHOT, 0, AT, "ab" * 32, AT, "x"), source="y"
    )
)
def test_a_record_decodes_or_is_refused_as_before(payload: bytes) -> None:
    assert _outcome(progress_event.decode, payload) == _outcome(_reference_decode, payload)


def test_records_sharing_a_moment_of_receipt_read_back_as_each_alone() -> None:
    events = [
        Event(f"e{i}", "00004", "cccd_collected", Kind.INCREMENT, 1, AT, received_at=at)
        for i, at in enumerate([AT, AT, AT + timedelta(microseconds=1), AT, None])
    ]
    decoded = [progress_event.decode(r) for r in progress_event.encode_all(events, source="s")]
    assert decoded == [_reference_decode(progress_event.encode(e, source="s")) for e in events]
    assert [e.received_at for e in decoded] == [e.received_at for e in events]


EVENTS = st.builds(
    Event,
    event_id=TEXT,
    unit=TEXT,
    indicator=TEXT,
    kind=st.sampled_from(Kind),
    value=st.integers(-(2**63), 2**63 - 1),
    occurred_at=st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, HANOI, timezone(timedelta(hours=-3, minutes=-30))]),
    ),
    subject=st.none() | TEXT,
    received_at=st.none() | st.just(AT),
    source=TEXT,
)


@given(EVENTS)
def test_an_events_content_hash_is_the_one_stored_before(event: Event) -> None:
    assert content_hash(event) == _reference_content_hash(event)
