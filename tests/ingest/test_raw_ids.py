"""No raw ID number enters (issue 16, docs/ingest.md *Privacy*): what looks like one, in
every string field of JSON and protobuf, refused without echoing it; and what does not
(keyed hashes, UUIDs, ULIDs, timestamps, compound keys of dates, unit codes and counters)
passes."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devtools.localstack import KafkaBroker
from services.ingest.protobuf import decode_batch
from services.ingest.rawids import contains_raw_id, looks_like_raw_id
from services.ingest.validation import RAW_ID_MESSAGE, Limits, validate_items
from tests.ingest.test_ingest_api import event as api_event
from tests.ingest.test_ingest_api import read_topic, serving, settings_for
from tests.ingest.test_ingest_protobuf import CATALOG, NOW, payload, pb_event
from tests.ingest.test_validation import event
from tests.support.bodies import validate_body
from tests.support.stack import Topics
from tests.support.world import build_world, issue_token
from tiendo.event import decode

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


# How people write CCCD, CMND and phone numbers in groups (docs/ingest.md *Privacy*).
grouped_ids = st.sampled_from(
    [
        "001-203-004567",
        "001-203-004-567",
        "0012-0300-4567",
        "012-345-678",
        "0912-345-678",
        "091-234-5678",
        "0912.345.678",
        "001 203 004 567",
        "0912-345678",
    ]
)
# What may follow a number inside a value: more digits after a separator too (a sequence).
tails = st.sampled_from(["", "1", "17", "123", "abc", "2024-06-01", "x9"])


@given(
    plain,
    st.sampled_from(SEPARATORS + ". "),
    written_ids | grouped_ids,
    st.sampled_from(SEPARATORS + "."),
    tails,
)
def test_an_id_number_is_found_whatever_follows_it(
    before: str, left: str, number: str, right: str, tail: str
) -> None:
    # "e-001203004567.1": the ".1" once joined the run into 13 digits, let through;
    # "e-cccd-001-203-004567": dashes were separators only around the whole value
    assert contains_raw_id(f"{before}{left}{number}{right}{tail}")
    assert contains_raw_id(f"{number}{right}{tail}")


@pytest.mark.parametrize(
    "event_id",
    [
        "e-001203004567.1",
        "e-cccd-001-203-004567",
        "batch-000123456789-1",
        "cccd-001-203-004567-1",
        "p:0912-345-678",
        "036094123_2",
    ],
)
def test_the_shapes_that_got_through_are_refused(event_id: str) -> None:
    errors = _json_errors(event(event_id=event_id))
    assert errors == [(0, "event_id", RAW_ID_MESSAGE)]


wards = st.integers(min_value=1, max_value=32_247).map(lambda n: f"{n:05d}")
districts = st.integers(min_value=1, max_value=999).map(lambda n: f"{n:03d}")
counters = st.integers(min_value=0, max_value=99_999_999)  # up to 8 digits: a record id


@given(
    st.datetimes(min_value=datetime(2002, 1, 1), max_value=datetime(2100, 1, 1)),
    districts,
    wards,
    counters,
)
def test_compound_keys_of_dates_units_and_counters_are_not_id_numbers(
    at: datetime, district: str, ward: str, n: int
) -> None:
    # dashes join the parts of keys upstream systems build: dates (groups of 2), unit
    # codes (a ward's 5 digits), times (6), counters — none a written ID number
    for key in (
        f"evt-{at:%Y-%m-%d}-{n}",
        f"e-{at:%m%d}-{ward}-{n}",
        f"hn-{district}-{ward}-{n}",
        f"{ward}-{at:%Y%m%d}-{n}",
        f"evt-{at:%Y%m%d}-{at:%H%M%S}-{n % 1000}",
        f"INV-{at:%Y%m}-{n % 10_000:04d}",
        f"evt-{at:%Y-%m-%dT%H:%M:%S.%f}Z-{n}",
        f"u-{ward}_{n}",
        # dotted: a date and a six-digit counter, Unix milliseconds and a counter
        f"evt.{at:%Y%m%d}.{n % 1_000_000:06d}",
        f"e.{int(at.timestamp() * 1000)}.{n % 1000:03d}",
        f"src:{at:%Y%m%d}.{at:%H%M%S}.{n % 1000:03d}",
    ):
        assert not contains_raw_id(key), key


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@given(st.text(alphabet=CROCKFORD, min_size=26, max_size=26), st.integers(0, 999))
def test_ulids_never_look_like_id_numbers(ulid: str, n: int) -> None:
    assert not contains_raw_id(ulid)
    assert not contains_raw_id(f"evt-{ulid}-{n}")
    assert not contains_raw_id(f"evt-{ulid.lower()}")


@given(st.uuids())
def test_a_uuid_of_decimal_digits_only_passes(uuid: object) -> None:
    # a UUID's last group is 12 hex digits, sometimes all decimal: still a UUID
    digits = str(uuid).translate(str.maketrans("abcdef", "123456"))
    assert not contains_raw_id(digits)
    assert not contains_raw_id(f"evt-{digits}-1")


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
    found = [
        "evt-001203004567",
        "vneid:001203004567:1",
        "x/012345678",
        "evt-1717000000",
        "e-001203004567.1",
        "e-cccd-001-203-004567",
        "x 001 203 004567",
        "e-０１２３４５６７８",  # digits of any script
    ]
    passed = [
        "evt001203004567",
        "e-1",
        "00004",
        "eid_activated_l2",
        "evt-12345678",
        "n-" + "9" * 13,
        "evt-2024-06-01-17",
        "hn-001-00004-123",
        "x-001203-004567",  # a documented gap: two groups of 6
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
@pytest.mark.parametrize(
    "written", [RAW_ID, f"x-{RAW_ID}", f"{CMND}.a", f"x-{RAW_ID}.1", "x-001-203-004567"]
)
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
@pytest.mark.parametrize("written", [RAW_ID, f"x-{RAW_ID}", f"x-{RAW_ID}.1", "x-001-203-004567"])
def test_protobuf_refuses_a_raw_id_in_every_string_field(field: str, written: str) -> None:
    decoded = decode_batch(payload(pb_event(), pb_event(**{"event_id": "e-2", field: written})))
    _, errors = validate_items(decoded.items, CATALOG, NOW, Limits())
    found = [(e.index, e.field, e.message) for e in [*decoded.errors, *errors]]
    assert found == [(1, field, RAW_ID_MESSAGE)]


def test_a_valid_time_with_nanoseconds_is_not_taken_for_an_id_number() -> None:
    # "00.001203004" would be a run of 11 digits; a valid RFC 3339 time is never searched
    assert _json_errors(event(occurred_at="2023-06-01T11:00:00.001203004+00:00")) == []


async def test_real_ingest_publishes_none_of_the_shapes_that_got_through(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    # the review's shapes, through the real service: refused on event_id, none on Kafka
    await build_world(database, starts_at=datetime.now(UTC) - timedelta(days=1))
    token = await issue_token(database, units=["001"], indicators=["cccd_collected"])
    sent = ["e-001203004567.1", "e-cccd-001-203-004567", "x-0912-345-678-1"]
    async with serving(settings_for(database, kafka.bootstrap, topics), token) as client:
        for event_id in sent:
            r = await client.post("/v1/events", json=api_event(event_id=event_id))
            assert r.status_code == 422, r.text
            assert [(e["index"], e["field"]) for e in r.json()["errors"]] == [(0, "event_id")]
            assert "001203004567" not in r.text
        r = await client.post("/v1/events", json=api_event(event_id="e-2024-06-01-17"))
        assert r.status_code == 202, r.text
    published = [decode(r.value).event_id for r in await read_topic(kafka.bootstrap, topics.events)]
    assert published == ["e-2024-06-01-17"]
