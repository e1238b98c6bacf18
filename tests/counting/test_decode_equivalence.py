"""The consumer's cheaper decoding and content hash (`bench.decode_cost`) are the ones they
replaced: the same event, or the same refusal word for word (a dead letter's reason), for
any record; the same hash for any event (stored hashes are compared with redeliveries').

One change is deliberate: a record breaking a rule of contract §4.1 (`tiendo.events.rules`)
is refused now, naming the field, where it used to be staged and fail its batch in
PostgreSQL forever (or, for an offset RFC 3339 cannot write, be counted though ingest
refuses such an event). The reference states those rules again, from the contract's words."""

import hashlib
import re
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


# contract §4.1, and the widest limits ingest may be set to (services/ingest/settings.py)
_REFERENCE_RULES = (
    ("event_id", lambda e: re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", e.event_id)),
    ("unit", lambda e: re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", e.unit)),
    ("indicator", lambda e: re.fullmatch(r"[a-z0-9_]{1,48}", e.indicator)),
    (
        "value",
        lambda e: (
            0 <= e.value <= 10**15
            if e.kind is Kind.SNAPSHOT
            else -1_000_000 <= e.value <= 1_000_000 and e.value != 0
        ),
    ),
    ("subject", lambda e: e.subject is None or re.fullmatch(r"[0-9a-f]{64}", e.subject)),
    ("subject", lambda e: e.subject is None or (e.kind is Kind.INCREMENT and e.value == 1)),
    ("source", lambda e: "\x00" not in e.source),
    # RFC 3339's offset is ±HH:MM: whole minutes, under a day
    (
        "occurred_at_offset_seconds",
        lambda e: (
            (offset := e.occurred_at.utcoffset()) is not None
            and offset.total_seconds() % 60 == 0
            and abs(offset) <= timedelta(hours=23, minutes=59)
        ),
    ),
)


def _reference_decode(payload: bytes) -> Event:
    """`progress_event.decode` as it was before (commit 08d0d6b), then contract §4.1's
    rules: the first one broken is the refusal's field."""
    event = _reference_old_decode(payload)
    for name, holds in _REFERENCE_RULES:
        if not holds(event):
            raise UndecodableEvent(f"{name}: (a rule of contract §4.1)")
    return event


def _reference_old_decode(payload: bytes) -> Event:
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
    """What a decoder makes of `payload`, every field and the zone spelled out; of a
    refusal under a rule of §4.1, the field it names (the wording is the rule's own)."""
    try:
        event = decode(payload)  # type: ignore[operator]
    except UndecodableEvent as exc:
        reason = str(exc)
        field = reason.split(":", maxsplit=1)[0]
        if field in {name for name, _ in _REFERENCE_RULES}:
            return "refused under §4.1", field
        return "refused", reason
    return "event", repr(event)


# Around datetime's range and past it, and the 24-hour bound of a UTC offset.
SECONDS = st.integers(-(2**63), 2**63 - 1) | st.integers(-62_135_596_900, 253_402_300_900)
OFFSETS = st.integers(-(2**31), 2**31 - 1) | st.integers(-86_401, 86_401) | st.just(25_200)
TEXT = st.text(max_size=6)
# Strings that pass a field's rule, and ones just past it (NUL, length, case, characters).
CODE = st.text("Aa0_.:-", min_size=1, max_size=3) | st.text("a0_", min_size=46, max_size=66)
FIELD = TEXT | CODE | st.sampled_from(["00004", "cccd_collected", "bad\x00id", "A" * 64])
SUBJECT = TEXT | st.sampled_from(["ab" * 32, "AB" * 32, "ab" * 31 + "a\x00", "ab" * 33])
VALUE = st.integers(-(2**63), 2**63 - 1) | st.sampled_from(
    [0, 1, 2, -1, 1_000_000, 1_000_001, -1_000_000, -1_000_001, 10**15, 10**15 + 1, 2**62 + 1]
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    message = events_pb2.ProgressEvent(
        event_id=draw(FIELD),
        unit=draw(FIELD),
        indicator=draw(FIELD),
        kind=draw(st.integers(0, 3)),  # type: ignore[arg-type]
        value=draw(VALUE),
        occurred_at_offset_seconds=draw(OFFSETS),
        subject=draw(SUBJECT),
        source=draw(TEXT),
    )
    for name in ("occurred_at", "received_at"):
        if draw(st.booleans()):
            ts = getattr(message, name)
            ts.seconds = draw(SECONDS)
            ts.nanos = draw(st.integers(-(2**31), 2**31 - 1) | st.integers(0, 999_999_999))
    return message.SerializeToString()


def _matching(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True)


@st.composite
def well_formed(draw: st.DrawFn) -> bytes:
    """Records that keep every rule but, now and then, one at its edge or just past it:
    what ingest publishes, so the cheaper decoding is held to the old one where it counts."""
    kind = draw(st.sampled_from(list(_PB_TO_KIND)))
    most = 10**15 if kind == events_pb2.EVENT_KIND_SNAPSHOT else 1_000_000
    value = draw(st.integers(-most, most) | st.sampled_from([0, most, most + 1, -most - 1]))
    message = events_pb2.ProgressEvent(
        event_id=draw(_matching(r"[A-Za-z0-9_.:-]{1,64}") | FIELD),
        unit=draw(_matching(r"[A-Za-z0-9_.-]{1,32}")),
        indicator=draw(_matching(r"[a-z0-9_]{1,48}")),
        kind=kind,
        value=value,
        occurred_at_offset_seconds=draw(st.integers(-86_399, 86_399)),
        subject=draw(st.just("") | _matching(r"[0-9a-f]{64}") | SUBJECT),
        source=draw(TEXT),
    )
    message.occurred_at.seconds = draw(st.integers(-62_135_510_400, 253_402_214_400))
    message.occurred_at.nanos = draw(st.integers(0, 999_999_999))
    if draw(st.booleans()):
        message.received_at.seconds = draw(st.integers(0, 253_402_214_400))
    return message.SerializeToString()


AT = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
HANOI = timezone(timedelta(hours=7))


@given(messages() | well_formed() | st.binary(max_size=40))
@example(
    progress_event.encode(
        Event("e1", "00004", "cccd_collected", Kind.INCREMENT, 2, AT.astimezone(HANOI))
    )
)
@example(
    progress_event.encode(
        Event("e1", "0", "i", Kind.INCREMENT, 1, AT, "ab" * 32, AT, "x"), source="y"
    )
)
@example(progress_event.encode(Event("e1", "0", "i", Kind.SNAPSHOT, 0, AT, "ab" * 32, AT)))
@example(progress_event.encode(Event("bad\x00id", "00004", "i", Kind.INCREMENT, 1, AT)))
@example(progress_event.encode(Event("e1", "00004", "i", Kind.SNAPSHOT, 2**62 + 1, AT)))
@example(progress_event.encode(Event("e1", "00004", "i", Kind.INCREMENT, 1, AT), source="a\x00"))
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
