"""Ingest's event validation: every rule of contract §4.1, each bad input with its field."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.rawids import looks_like_raw_id
from services.ingest.validation import (
    EVENT_FIELDS,
    Catalog,
    Limits,
    out_of_scope,
    parse_timestamp,
    scope_errors,
)
from tests.support.bodies import validate_body
from tiendo.event import Kind

NOW = datetime(2023, 6, 1, 12, 0, tzinfo=UTC)
CATALOG = Catalog(
    units={"01": (), "001": ("01",), "00004": ("01", "001"), "002": ("01",)},
    indicators=frozenset({"cccd_collected", "eid_activated_l2"}),
)
SUBJECT = "a3f5" + "0" * 60
RAW_ID = "001203004567"


def event(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": "e-1",
        "unit": "00004",
        "indicator": "cccd_collected",
        "occurred_at": "2023-06-01T08:15:00+07:00",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def errors_of(body: object, limits: Limits | None = None) -> list[tuple[int | None, str, str]]:
    events, errors = validate_body(body, CATALOG, NOW, limits)
    assert not (events and errors)
    return [(e.index, e.field, e.message) for e in errors]


def test_minimal_event_defaults_to_an_increment_of_one() -> None:
    events, errors = validate_body(event(), CATALOG, NOW)
    assert errors == []
    assert events[0].kind is Kind.INCREMENT
    assert events[0].value == 1
    assert events[0].occurred_at == datetime(2023, 6, 1, 1, 15, tzinfo=UTC)
    assert events[0].received_at == NOW


def test_snapshot_and_negative_correction_are_valid() -> None:
    body = {"events": [event(kind="snapshot", value=0), event(event_id="e-2", value=-3)]}
    events, errors = validate_body(body, CATALOG, NOW)
    assert errors == []
    assert [e.value for e in events] == [0, -3]


def test_subject_on_an_increment_of_one_is_kept() -> None:
    events, errors = validate_body(event(subject=SUBJECT), CATALOG, NOW)
    assert errors == []
    assert events[0].subject == SUBJECT


BAD = [
    ("missing event_id", event(event_id=...), "event_id", "required"),
    ("empty event_id", event(event_id=""), "event_id", "must be 1-64"),
    ("event_id too long", event(event_id="x" * 65), "event_id", "must be 1-64"),
    ("event_id with space", event(event_id="a b"), "event_id", "must be 1-64"),
    ("event_id with newline", event(event_id="ab\n"), "event_id", "must be 1-64"),
    ("event_id not a string", event(event_id=7), "event_id", "must be 1-64"),
    ("missing unit", event(unit=...), "unit", "required"),
    ("unknown unit", event(unit="99999"), "unit", "unknown unit code"),
    ("unit with fullwidth digits", event(unit="０００04"), "unit", "must be a unit code"),
    ("unit with Arabic-Indic digits", event(unit="٠٠٠٠٤"), "unit", "must be a unit code"),
    ("unit with zero-width space", event(unit="0000\u200b4"), "unit", "must be a unit code"),
    ("unit too long", event(unit="0" * 33), "unit", "1-32"),
    ("unit not a string", event(unit=4), "unit", "1-32"),
    ("missing indicator", event(indicator=...), "indicator", "required"),
    ("unknown indicator", event(indicator="votes"), "indicator", "catalogue"),
    ("uppercase indicator", event(indicator="CCCD_COLLECTED"), "indicator", "a-z 0-9 _"),
    ("bad kind", event(kind="delta"), "kind", "increment"),
    ("null kind", event(kind=None), "kind", "increment"),
    ("zero increment", event(value=0), "value", "non-zero"),
    ("huge increment", event(value=1_000_001), "value", "non-zero"),
    ("huge negative increment", event(value=-1_000_001), "value", "non-zero"),
    ("beyond 64 bits", event(value=1e30), "value", "non-zero"),
    ("float value", event(value=1.5), "value", "integer"),
    ("boolean value", event(value=True), "value", "integer"),
    ("string value", event(value="3"), "value", "integer"),
    ("null value", event(value=None), "value", "integer"),
    ("negative snapshot", event(kind="snapshot", value=-1), "value", "snapshot"),
    ("huge snapshot", event(kind="snapshot", value=10**9 + 1), "value", "snapshot"),
    ("snapshot without value", event(kind="snapshot"), "value", "required for a snapshot"),
    ("missing occurred_at", event(occurred_at=...), "occurred_at", "required"),
    ("no offset", event(occurred_at="2023-06-01T08:15:00"), "occurred_at", "RFC 3339"),
    ("date only", event(occurred_at="2023-06-01"), "occurred_at", "RFC 3339"),
    ("space separator", event(occurred_at="2023-06-01 08:15:00Z"), "occurred_at", "RFC 3339"),
    ("month 13", event(occurred_at="2023-13-01T08:15:00Z"), "occurred_at", "RFC 3339"),
    ("offset hour 24", event(occurred_at="2023-06-01T08:15:00+24:00"), "occurred_at", "RFC"),
    ("epoch seconds", event(occurred_at=1685600000), "occurred_at", "RFC 3339"),
    ("far future", event(occurred_at="2023-06-01T12:06:00Z"), "occurred_at", "future"),
    ("before the horizon", event(occurred_at="2022-05-30T00:00:00Z"), "occurred_at", "past"),
    ("raw ID number as subject", event(subject=RAW_ID), "subject", "raw ID number"),
    ("raw ID with spaces", event(subject="001 203 004567"), "subject", "raw ID number"),
    ("old 9-digit ID", event(subject="012345678"), "subject", "raw ID number"),
    ("uppercase subject", event(subject=SUBJECT.upper()), "subject", "64 lowercase hex"),
    ("subject not a string", event(subject=12), "subject", "64 lowercase hex"),
    ("subject on value 2", event(subject=SUBJECT, value=2), "subject", "value 1"),
    ("subject on snapshot", event(subject=SUBJECT, kind="snapshot", value=1), "subject", "value 1"),
    ("extra field", event(note="hi"), "note", "unknown field"),
    ("source set by the client", event(source="me"), "source", "unknown field"),
    ("not an object", ["x"], "", "JSON object"),
    ("a string", "x", "", "JSON object"),
]


@pytest.mark.parametrize(
    ("body", "field", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_event_is_rejected_with_its_field(body: object, field: str, message: str) -> None:
    errors = errors_of(body)
    assert any(f == field and message in m for _, f, m in errors), errors


def test_future_tolerance_is_five_minutes_and_the_horizon_a_year_by_default() -> None:
    assert errors_of(event(occurred_at="2023-06-01T12:05:00Z")) == []
    assert errors_of(event(occurred_at="2022-06-01T12:00:00Z")) == []


def test_limits_are_taken_from_the_settings() -> None:
    tight = Limits(
        max_batch=2,
        max_event_id_length=8,
        max_unit_length=5,
        max_increment=10,
        max_snapshot=100,
        future_tolerance=timedelta(0),
        past_horizon=timedelta(days=1),
    )
    assert errors_of(event(event_id="x" * 9), tight)[0][1:] == (
        "event_id",
        "must be 1-8 characters of A-Z a-z 0-9 _ . : -",
    )
    assert errors_of(event(unit="000004"), tight)[0][2].startswith("must be a unit code: 1-5")
    assert errors_of(event(value=11), tight)[0][2] == "an increment must be non-zero, -10 to 10"
    assert errors_of(event(kind="snapshot", value=101), tight)[0][1] == "value"
    assert errors_of(event(occurred_at="2023-06-01T12:00:01Z"), tight)[0][2] == (
        "more than 0 s in the future"
    )
    assert errors_of(event(occurred_at="2023-05-31T11:59:59Z"), tight)[0][2] == (
        "more than 1 days in the past"
    )
    three = {"events": [event(event_id=f"e{i}", unit="001") for i in range(3)]}
    assert errors_of(three, tight) == [(None, "events", "at most 2 events per request")]


def test_batch_reports_every_bad_event_by_index_and_accepts_none() -> None:
    body = {"events": [event(), event(event_id="e-2", value=0), event(event_id="e-3", unit="x")]}
    events, errors = validate_body(body, CATALOG, NOW)
    assert events == []
    assert [(e.index, e.field) for e in errors] == [(1, "value"), (2, "unit")]


def test_repeated_event_id_within_a_batch_is_valid_and_left_to_sort_repeats() -> None:
    # issue 16 changed the contract: a batch repeating an event_id was refused whole (422
    # "repeats the event_id of events[0]"); now validation passes every event on and
    # `repeats.sort_repeats` (tests/ingest/test_repeats.py) keeps one of exact repeats
    events, errors = validate_body({"events": [event(), event()]}, CATALOG, NOW)
    assert errors == []
    assert [e.event_id for e in events] == ["e-1", "e-1"]


def test_many_unknown_fields_are_summarised_and_long_names_cut() -> None:
    body = event(**{f"x{i:03}": 1 for i in range(500)}, **{"y" * 1000: 1})
    errors = errors_of(body)
    assert len(errors) == 6
    assert errors[-1] == (0, "", "496 more unknown fields")
    assert all(len(f) <= 65 for _, f, _ in errors)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"events": []}, "at least one"),
        ({"events": {}}, "array"),
        ({"events": None}, "array"),
        ({"events": [event()], "extra": 1}, "unknown field"),
        ({"events": [event(event_id=f"e{i}") for i in range(1001)]}, "at most 1000"),
    ],
)
def test_bad_batch_envelope(body: object, message: str) -> None:
    errors = errors_of(body)
    assert len(errors) == 1
    assert errors[0][0] is None
    assert message in errors[0][2]


@pytest.mark.parametrize(
    "subject", [RAW_ID, "001-203-004567", " 001203004567 ", "012345678", "001.203.004.567"]
)
def test_raw_id_number_is_refused_and_never_echoed(subject: str) -> None:
    _, errors = validate_body(event(subject=subject), CATALOG, NOW)
    assert [(e.field, e.message) for e in errors] == [
        ("subject", "looks like a raw ID number; send its keyed hash instead")
    ]
    assert all(subject.strip() not in e.message for e in errors)


def test_no_message_echoes_a_rejected_value() -> None:
    marker = "zz" + RAW_ID
    body = {
        "events": [
            event(event_id=marker),
            event(event_id="e-2", unit=marker),
            event(event_id="e-3", indicator=marker),
            event(event_id="e-4", kind=marker),
            event(event_id="e-5", value=marker),
            event(event_id="e-6", occurred_at=marker),
            event(event_id="e-7", subject=marker),
        ]
    }
    _, errors = validate_body(body, CATALOG, NOW)
    assert len(errors) == 7
    assert all(RAW_ID not in e.message for e in errors)


def test_scope_by_subtree_and_indicator() -> None:
    events, _ = validate_body(event(), CATALOG, NOW)
    e = events[0]
    assert out_of_scope(e, CATALOG, frozenset({"001"}), frozenset()) == []
    assert out_of_scope(e, CATALOG, frozenset({"00004"}), frozenset()) == []
    assert out_of_scope(e, CATALOG, frozenset(), frozenset({"cccd_collected"})) == []
    [unit] = out_of_scope(e, CATALOG, frozenset({"002"}), frozenset())
    assert (unit.field, unit.message) == ("unit", "unit 00004 is outside this token's scope")
    both = out_of_scope(e, CATALOG, frozenset({"002"}), frozenset({"eid_activated_l2"}))
    assert [p.field for p in both] == ["unit", "indicator"]


def test_scope_errors_list_every_event_by_index() -> None:
    body = {"events": [event(), event(event_id="e-2", unit="002"), event(event_id="e-3")]}
    events, _ = validate_body(body, CATALOG, NOW)
    errors = scope_errors(events, CATALOG, frozenset({"001"}), frozenset())
    assert [(e.index, e.field, e.message) for e in errors] == [
        (1, "unit", "unit 002 is outside this token's scope")
    ]
    assert scope_errors(events, CATALOG, frozenset(), frozenset()) == []


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(2999, 1, 1),
        timezones=st.sampled_from([UTC, None]),
    ),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59),
)
def test_rfc3339_round_trip(moment: datetime, offset_minutes: int) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    assert parse_timestamp(aware.isoformat()) == aware


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-06-01T08:15:00Z", datetime(2023, 6, 1, 8, 15, tzinfo=UTC)),
        ("2023-06-01t08:15:00z", datetime(2023, 6, 1, 8, 15, tzinfo=UTC)),
        ("2023-06-01T08:15:00z", datetime(2023, 6, 1, 8, 15, tzinfo=UTC)),
        ("2023-06-01t08:15:00+07:00", datetime(2023, 6, 1, 1, 15, tzinfo=UTC)),
        ("2023-06-01T08:15:00.5-00:30", datetime(2023, 6, 1, 8, 45, 0, 500000, tzinfo=UTC)),
        ("2023-06-01T08:15:00.123456789Z", datetime(2023, 6, 1, 8, 15, 0, 123456, tzinfo=UTC)),
        ("2023-06-01t08:15:00.123456789z", datetime(2023, 6, 1, 8, 15, 0, 123456, tzinfo=UTC)),
        ("2023-06-01T08:15:00+23:59", datetime(2023, 5, 31, 8, 16, tzinfo=UTC)),
        ("2023-06-01T08:15:00+07:60", None),
        ("2023-06-01t08:15:00+24:00", None),
        ("2023-02-29T08:15:00Z", None),
        ("2023-02-29t08:15:00z", None),
        ("2023-06-01T24:00:00Z", None),
        ("2023-06-01T08:15:60Z", None),
    ],
)
def test_every_written_form_rfc3339_allows_and_its_bounds(
    text: str, expected: datetime | None
) -> None:
    # Upper case T and Z are read by the C parser, lower case by the pattern's own groups:
    # both ways are here, with their offsets, fractions and bounds.
    # (an aware datetime is never equal to a naive one: equal means aware too)
    assert parse_timestamp(text) == expected


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from(["T", "t"]),
    st.text(alphabet="0123456789", max_size=10),
    st.sampled_from(["Z", "z", "+", "-"]),
    st.sampled_from([0, 23, 24]) | st.integers(0, 29),  # each side of the bounds, often
    st.sampled_from([0, 59, 60]) | st.integers(0, 69),
    st.sampled_from([28, 29, 30, 31]) | st.integers(1, 31),
)
def test_every_offset_and_day_is_read_or_refused_as_its_bounds_say(
    moment: datetime, t: str, digits: str, zone: str, hours: int, minutes: int, day: int
) -> None:
    # Any day number of the month, any offset up to 29:69 and any number of fraction
    # digits, each side of its bound: what the parser makes of them, against the calendar
    # and the offset's arithmetic done here.
    fraction = f".{digits}" if digits else ""
    offset = "Z" if zone == "Z" else "z" if zone == "z" else f"{zone}{hours:02}:{minutes:02}"
    clock = f"{moment.hour:02}:{moment.minute:02}:{moment.second:02}"
    text = f"{moment.year:04}-{moment.month:02}-{day:02}{t}{clock}{fraction}{offset}"
    try:
        naive = moment.replace(day=day, microsecond=int((digits + "000000")[:6]))
    except ValueError:
        naive = None  # no such day in that month
    fits = zone in "Zz" or (hours <= 23 and minutes <= 59)
    # (any number of fraction digits: past the sixth they are cut, as PostgreSQL keeps)
    if naive is None or not fits:
        assert parse_timestamp(text) is None
        return
    sign = -1 if zone == "-" else 1
    zone_offset = timedelta(0) if zone in "Zz" else sign * timedelta(hours=hours, minutes=minutes)
    assert parse_timestamp(text) == naive.replace(tzinfo=timezone(zone_offset))


@given(st.text(max_size=40))
def test_parse_timestamp_never_raises(text: str) -> None:
    parsed = parse_timestamp(text)
    assert parsed is None or parsed.tzinfo is not None


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
def test_raw_id_detection_only_fires_on_9_to_12_digits(text: str) -> None:
    digits = "".join(c for c in text if c not in " \t\n\r\x0b\x0c.-_/")
    if looks_like_raw_id(text):
        assert 9 <= len(digits) <= 12


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    max_leaves=20,
)


@given(JSON)
def test_any_json_gets_events_or_errors_never_an_exception(body: object) -> None:
    events, errors = validate_body(body, CATALOG, NOW)
    assert bool(events) != bool(errors)


def _field_value(name: str) -> st.SearchStrategy[object]:
    good = {
        "event_id": st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z"),
        "unit": st.sampled_from(sorted(CATALOG.units)),
        "indicator": st.sampled_from(sorted(CATALOG.indicators)),
        "kind": st.sampled_from(["increment", "snapshot"]),
        "value": st.integers(-2_000_000, 2_000_000_000),
        "occurred_at": st.datetimes(
            min_value=datetime(2022, 1, 1), max_value=datetime(2023, 7, 1), timezones=st.just(UTC)
        ).map(datetime.isoformat),
        "subject": st.sampled_from([SUBJECT, None, RAW_ID]),
    }[name]
    return good | JSON


EVENTS = st.fixed_dictionaries(
    {},
    optional={name: _field_value(name) for name in sorted(EVENT_FIELDS)},
)


@settings(max_examples=300)
@given(st.lists(EVENTS, min_size=1, max_size=5))
def test_an_accepted_event_obeys_every_rule(items: list[dict[str, object]]) -> None:
    events, errors = validate_body({"events": items}, CATALOG, NOW)
    if errors:
        assert events == []
        assert all(e.index is None or 0 <= e.index < len(items) for e in errors)
        return
    assert len({e.event_id for e in events}) == len(items)
    for e in events:
        assert e.unit in CATALOG.units
        assert e.indicator in CATALOG.indicators
        if e.kind is Kind.INCREMENT:
            assert e.value != 0
            assert abs(e.value) <= 1_000_000
        else:
            assert 0 <= e.value <= 1_000_000_000
        assert NOW - timedelta(days=366) <= e.occurred_at <= NOW + timedelta(minutes=5)
        assert e.subject is None or (len(e.subject) == 64 and e.kind is Kind.INCREMENT)
        assert e.subject != RAW_ID
