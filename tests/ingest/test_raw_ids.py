"""No raw ID number enters (issue 16, docs/ingest.md *Privacy*): what looks like one, in
every string field of JSON and protobuf, refused without echoing it; and what does not
(keyed hashes, UUIDs, timestamps) passes."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.protobuf import decode_batch
from services.ingest.rawids import contains_raw_id, looks_like_raw_id
from services.ingest.validation import RAW_ID_MESSAGE, Limits, validate_items
from tests.ingest.test_ingest_protobuf import CATALOG, NOW, payload, pb_event
from tests.ingest.test_validation import event
from tests.support.bodies import validate_body

RAW_ID = "001203004567"
CMND = "012345678"
SEPARATORS = "-_:/"
written_ids = st.sampled_from(
    [RAW_ID, CMND, "001.203.004.567", "001 203 004567", "0912345678", "84912345678"]
)
plain = st.text(alphabet="abcxyzABC", min_size=1, max_size=8)


@given(plain, st.sampled_from(SEPARATORS), written_ids, st.sampled_from(SEPARATORS), plain)
def test_an_id_number_standing_alone_inside_a_value_is_found(
    before: str, left: str, number: str, right: str, after: str
) -> None:
    assert contains_raw_id(number)
    assert contains_raw_id(f"{before}{left}{number}")
    assert contains_raw_id(f"{number}{right}{after}")
    assert contains_raw_id(f"{before}{left}{number}{right}{after}")


@given(st.binary(min_size=32, max_size=32))
def test_keyed_hashes_never_look_like_id_numbers(digest: bytes) -> None:
    # a quarter of them hold 9-12 digits in a row between letters: not a typed number
    assert not contains_raw_id(digest.hex())


@given(st.uuids())
def test_uuids_never_look_like_id_numbers(uuid: object) -> None:
    assert not contains_raw_id(str(uuid))
    assert not contains_raw_id(f"evt-{uuid}")
    assert not contains_raw_id(str(uuid).upper())


@given(st.datetimes(min_value=datetime(2002, 1, 1), max_value=datetime(2100, 1, 1)))
def test_timestamps_in_ids_are_not_id_numbers(at: datetime) -> None:
    aware = at.replace(tzinfo=UTC)
    assert not contains_raw_id(f"evt-{aware.isoformat()}")
    assert not contains_raw_id(f"evt-{aware:%Y%m%dT%H%M%SZ}-7")
    assert not contains_raw_id(f"evt-{aware:%Y-%m-%d}-00004-3")
    # Unix milliseconds: 13 digits since September 2001
    assert not contains_raw_id(f"evt-{int(aware.timestamp() * 1000)}")


def test_what_is_found_and_what_is_not() -> None:
    found = ["evt-001203004567", "vneid:001203004567:1", "x/012345678", "evt-1717000000"]
    passed = [
        "evt001203004567",
        "e-1",
        "00004",
        "eid_activated_l2",
        "evt-12345678",
        "n-" + "9" * 13,
    ]
    assert [t for t in found if not contains_raw_id(t)] == []
    assert [t for t in passed if contains_raw_id(t)] == []


@given(st.text(max_size=30))
def test_the_whole_value_rule_is_kept(text: str) -> None:
    if looks_like_raw_id(text):
        assert contains_raw_id(text)


def _json_errors(body: object) -> list[tuple[int | None, str, str]]:
    _, errors = validate_body(body, CATALOG, NOW)
    return [(e.index, e.field, e.message) for e in errors]


@pytest.mark.parametrize(
    "field", ["event_id", "unit", "indicator", "kind", "value", "occurred_at", "subject"]
)
@pytest.mark.parametrize("written", [RAW_ID, f"x-{RAW_ID}", f"{CMND}.a"])
def test_json_refuses_a_raw_id_in_every_field_without_echoing_it(field: str, written: str) -> None:
    good = event(occurred_at=(NOW - timedelta(hours=1)).isoformat())
    errors = _json_errors({"events": [good, {**good, "event_id": "e-2", field: written}]})
    assert (1, field, RAW_ID_MESSAGE) in errors
    # (a bad kind also leaves `value` without its default: that error may come along)
    assert {(i, f) for i, f, _ in errors} <= {(1, field), (1, "value")}
    assert RAW_ID not in repr(errors)
    assert CMND not in repr(errors)


def test_json_never_echoes_an_unknown_field_named_like_a_raw_id() -> None:
    errors = _json_errors(event(**{RAW_ID: 1, f"k-{CMND}": 2, "colour": 3}))
    assert RAW_ID not in repr(errors)
    assert CMND not in repr(errors)
    assert (0, "colour", "unknown field") in errors
    assert errors.count((0, "", "unknown field whose name looks like a raw ID number")) == 2
    errors = _json_errors({"events": [event()], RAW_ID: 1})
    assert RAW_ID not in repr(errors)


@pytest.mark.parametrize("field", ["event_id", "unit", "indicator", "subject", "source"])
@pytest.mark.parametrize("written", [RAW_ID, f"x-{RAW_ID}"])
def test_protobuf_refuses_a_raw_id_in_every_string_field(field: str, written: str) -> None:
    decoded = decode_batch(payload(pb_event(), pb_event(**{"event_id": "e-2", field: written})))
    _, errors = validate_items(decoded.items, CATALOG, NOW, Limits())
    found = [(e.index, e.field, e.message) for e in [*decoded.errors, *errors]]
    assert found == [(1, field, RAW_ID_MESSAGE)]


def test_a_valid_time_with_nanoseconds_is_not_taken_for_an_id_number() -> None:
    # "00.001203004" would be a run of 11 digits; a valid RFC 3339 time is never searched
    assert _json_errors(event(occurred_at="2023-06-01T11:00:00.001203004+00:00")) == []
