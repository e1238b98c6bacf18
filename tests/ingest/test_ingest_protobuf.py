"""Protobuf input (`application/x-protobuf`, an EventBatch) gets the JSON path's validation:
the same events for the same facts, the same fields named for the same mistakes."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.protobuf import MalformedProtobuf, decode_batch
from services.ingest.validation import Catalog, Limits, validate_items
from tests.support.bodies import validate_body
from tiendo.event import Event
from tiendo.events.v1 import events_pb2

NOW = datetime(2023, 6, 1, 12, 0, tzinfo=UTC)
CATALOG = Catalog(
    units={"01": (), "001": ("01",), "00004": ("01", "001")},
    indicators=frozenset({"cccd_collected"}),
)
ICT = timezone(timedelta(hours=7))
SUBJECT = "ab" * 32


def pb_event(**fields: object) -> events_pb2.ProgressEvent:
    base: dict[str, object] = {
        "event_id": "e-1",
        "unit": "00004",
        "indicator": "cccd_collected",
        "kind": events_pb2.EVENT_KIND_INCREMENT,
        "value": 1,
    }
    at = fields.pop("at", datetime(2023, 6, 1, 8, 15, tzinfo=ICT))
    base.update(fields)
    # each test overrides any field, some with a wrong type on purpose
    message = events_pb2.ProgressEvent(**base)  # type: ignore[arg-type]
    if isinstance(at, datetime):
        ts = Timestamp()
        ts.FromDatetime(at.astimezone(UTC))
        message.occurred_at.CopyFrom(ts)
        offset = at.utcoffset()
        assert offset is not None
        if "occurred_at_offset_seconds" not in fields:
            message.occurred_at_offset_seconds = int(offset.total_seconds())
    return message


def payload(*events: events_pb2.ProgressEvent) -> bytes:
    return events_pb2.EventBatch(events=list(events)).SerializeToString()


def validate(data: bytes) -> tuple[list[Event], list[tuple[int | None, str, str]]]:
    decoded = decode_batch(data)
    events, errors = validate_items(decoded.items, CATALOG, NOW, Limits())
    merged = [*decoded.errors, *errors]
    return ([] if merged else events), [(e.index, e.field, e.message) for e in merged]


def test_a_protobuf_batch_gives_the_same_events_as_the_same_json() -> None:
    data = payload(
        pb_event(subject=SUBJECT),
        pb_event(event_id="e-2", kind=events_pb2.EVENT_KIND_SNAPSHOT, value=40),
        pb_event(event_id="e-3", kind=events_pb2.EVENT_KIND_UNSPECIFIED, value=-2),
    )
    from_pb, errors = validate(data)
    assert errors == []
    from_json, json_errors = validate_body(
        {
            "events": [
                {
                    "event_id": "e-1",
                    "unit": "00004",
                    "indicator": "cccd_collected",
                    "occurred_at": "2023-06-01T08:15:00+07:00",
                    "subject": SUBJECT,
                },
                {
                    "event_id": "e-2",
                    "unit": "00004",
                    "indicator": "cccd_collected",
                    "kind": "snapshot",
                    "value": 40,
                    "occurred_at": "2023-06-01T08:15:00+07:00",
                },
                {
                    "event_id": "e-3",
                    "unit": "00004",
                    "indicator": "cccd_collected",
                    "value": -2,
                    "occurred_at": "2023-06-01T08:15:00+07:00",
                },
            ]
        },
        CATALOG,
        NOW,
    )
    assert json_errors == []
    assert from_pb == from_json
    assert from_pb[0].occurred_at.utcoffset() == timedelta(hours=7)


BAD = [
    ("missing event_id", pb_event(event_id=""), "event_id", "required"),
    ("event_id with space", pb_event(event_id="a b"), "event_id", "must be 1-64"),
    ("unknown unit", pb_event(unit="99999"), "unit", "unknown unit code"),
    ("unit with fullwidth digits", pb_event(unit="０００04"), "unit", "must be a unit code"),
    ("missing indicator", pb_event(indicator=""), "indicator", "required"),
    ("unknown kind number", pb_event(kind=7), "kind", "increment"),
    ("zero increment (no default of 1)", pb_event(value=0), "value", "non-zero"),
    ("huge increment", pb_event(value=2**62), "value", "non-zero"),
    ("negative snapshot", pb_event(kind=2, value=-1), "value", "snapshot"),
    ("missing occurred_at", pb_event(at=None), "occurred_at", "required"),
    (
        "offset not whole minutes",
        pb_event(occurred_at_offset_seconds=7 * 3600 + 1),
        "occurred_at_offset_seconds",
        "whole minutes",
    ),
    (
        "offset of a day",
        pb_event(occurred_at_offset_seconds=24 * 3600),
        "occurred_at_offset_seconds",
        "whole minutes",
    ),
    ("future", pb_event(at=NOW + timedelta(minutes=6)), "occurred_at", "future"),
    ("raw ID number as subject", pb_event(subject="001203004567"), "subject", "raw ID number"),
    ("subject on value 2", pb_event(subject=SUBJECT, value=2), "subject", "value 1"),
    ("source set by the client", pb_event(source="me"), "source", "set by ingest"),
]


@pytest.mark.parametrize(
    ("message", "field", "text"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_protobuf_event_names_the_same_field_as_json(
    message: events_pb2.ProgressEvent, field: str, text: str
) -> None:
    events, errors = validate(payload(message))
    assert events == []
    assert any(f == field and text in m for _, f, m in errors), errors


def test_out_of_range_timestamp_is_refused() -> None:
    message = pb_event()
    message.occurred_at.seconds = 253_402_300_800  # year 10000
    _, errors = validate(payload(message))
    assert (0, "occurred_at", "must be a valid google.protobuf.Timestamp") in errors


def test_received_at_is_ingests_to_set() -> None:
    message = pb_event()
    message.received_at.seconds = 1
    _, errors = validate(payload(message))
    assert (0, "received_at", "set by ingest; leave it empty") in errors


def test_unknown_fields_are_refused() -> None:
    # field 99, varint 1, appended to an otherwise valid event
    inner = pb_event().SerializeToString() + b"\x98\x06\x01"
    data = b"\x0a" + bytes([len(inner)]) + inner
    _, errors = validate(data)
    assert (0, "", "unknown field in ProgressEvent") in errors


def test_duplicate_ids_within_a_protobuf_batch_are_valid() -> None:
    # issue 16: was refused whole (422 "repeats the event_id of events[0]"); an exact
    # repeat is now accepted once (tests/ingest/test_repeats.py)
    _, errors = validate(payload(pb_event(), pb_event()))
    assert errors == []


@pytest.mark.parametrize("data", [b"\xff", b"\x0a\x05ab", b'{"event_id": "x"}', b"\x0a\xff\xff"])
def test_bytes_that_are_not_an_event_batch_are_malformed(data: bytes) -> None:
    with pytest.raises(MalformedProtobuf):
        decode_batch(data)


def test_invalid_utf8_in_a_string_is_malformed() -> None:
    inner = b"\x0a\x02\xff\xfe"  # event_id = invalid UTF-8
    with pytest.raises(MalformedProtobuf):
        decode_batch(b"\x0a" + bytes([len(inner)]) + inner)


@given(st.binary(max_size=300))
def test_any_bytes_are_malformed_or_validated_never_an_exception(data: bytes) -> None:
    try:
        decoded = decode_batch(data)
    except MalformedProtobuf:
        return
    events, errors = validate_items(decoded.items, CATALOG, NOW, Limits())
    assert isinstance(events, list)
    assert isinstance(errors, list)
