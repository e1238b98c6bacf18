"""Ingest's event validation: every rule of SPEC §4.1, each bad input with its field."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.validation import Catalog, out_of_scope, parse_timestamp, validate_body
from tiendo.event import Kind

NOW = datetime(2023, 6, 1, 12, 0, tzinfo=UTC)
CATALOG = Catalog(
    units={"01": (), "001": ("01",), "00004": ("01", "001"), "002": ("01",)},
    indicators=frozenset({"cccd_collected", "eid_activated_l2"}),
)
SUBJECT = "a3f5" + "0" * 60


def event(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": "e-1",
        "unit": "00004",
        "indicator": "cccd_collected",
        "occurred_at": "2023-06-01T08:15:00+07:00",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def errors_of(body: object) -> list[tuple[int | None, str, str]]:
    events, errors = validate_body(body, CATALOG, NOW)
    assert not (events and errors)
    return [(e.index, e.field, e.message) for e in errors]


def test_minimal_event_defaults_to_an_increment_of_one():
    events, errors = validate_body(event(), CATALOG, NOW)
    assert errors == []
    assert events[0].kind is Kind.INCREMENT
    assert events[0].value == 1
    assert events[0].occurred_at == datetime(2023, 6, 1, 1, 15, tzinfo=UTC)


def test_snapshot_and_negative_correction_are_valid():
    body = {"events": [event(kind="snapshot", value=0), event(event_id="e-2", value=-3)]}
    events, errors = validate_body(body, CATALOG, NOW)
    assert errors == []
    assert [e.value for e in events] == [0, -3]


BAD = [
    ("missing event_id", event(event_id=...), "event_id", "required"),
    ("empty event_id", event(event_id=""), "event_id", "must be 1-64"),
    ("event_id too long", event(event_id="x" * 65), "event_id", "must be 1-64"),
    ("event_id with space", event(event_id="a b"), "event_id", "must be 1-64"),
    ("event_id not a string", event(event_id=7), "event_id", "must be 1-64"),
    ("missing unit", event(unit=...), "unit", "required"),
    ("unknown unit", event(unit="99999"), "unit", "unknown unit code"),
    ("unit with lookalike digits", event(unit="０００04"), "unit", "unknown unit code"),
    ("unit too long", event(unit="0" * 33), "unit", "1-32"),
    ("unit not a string", event(unit=4), "unit", "1-32"),
    ("missing indicator", event(indicator=...), "indicator", "required"),
    ("unknown indicator", event(indicator="votes"), "indicator", "catalogue"),
    ("bad kind", event(kind="delta"), "kind", "increment"),
    ("zero increment", event(value=0), "value", "non-zero"),
    ("huge increment", event(value=1_000_001), "value", "non-zero"),
    ("float value", event(value=1.5), "value", "integer"),
    ("boolean value", event(value=True), "value", "integer"),
    ("string value", event(value="3"), "value", "integer"),
    ("negative snapshot", event(kind="snapshot", value=-1), "value", "snapshot"),
    ("snapshot without value", event(kind="snapshot"), "value", "required for a snapshot"),
    ("missing occurred_at", event(occurred_at=...), "occurred_at", "required"),
    ("no offset", event(occurred_at="2023-06-01T08:15:00"), "occurred_at", "RFC 3339"),
    ("date only", event(occurred_at="2023-06-01"), "occurred_at", "RFC 3339"),
    ("month 13", event(occurred_at="2023-13-01T08:15:00Z"), "occurred_at", "RFC 3339"),
    ("far future", event(occurred_at="2023-06-01T12:06:00Z"), "occurred_at", "future"),
    ("raw ID number as subject", event(subject="001203004567"), "subject", "raw ID number"),
    ("uppercase subject", event(subject=SUBJECT.upper()), "subject", "64 lowercase hex"),
    ("subject on value 2", event(subject=SUBJECT, value=2), "subject", "value 1"),
    ("subject on snapshot", event(subject=SUBJECT, kind="snapshot", value=1), "subject", "value 1"),
    ("extra field", event(note="hi"), "note", "unknown field"),
    ("not an object", ["x"], "", "JSON object"),
]


@pytest.mark.parametrize(
    ("body", "field", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_event_is_rejected_with_its_field(body, field, message):
    errors = errors_of(body)
    assert any(f == field and message in m for _, f, m in errors), errors


def test_future_tolerance_is_five_minutes():
    assert errors_of(event(occurred_at="2023-06-01T12:05:00Z")) == []


def test_batch_reports_every_bad_event_by_index_and_accepts_none():
    body = {"events": [event(), event(event_id="e-2", value=0), event(event_id="e-3", unit="x")]}
    events, errors = validate_body(body, CATALOG, NOW)
    assert events == []
    assert [(e.index, e.field) for e in errors] == [(1, "value"), (2, "unit")]


def test_duplicate_event_id_within_a_batch_is_rejected():
    errors = errors_of({"events": [event(), event()]})
    assert errors == [(1, "event_id", "repeats the event_id of events[0]")]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"events": []}, "at least one"),
        ({"events": {}}, "array"),
        ({"events": [event()], "extra": 1}, "unknown field"),
        ({"events": [event(event_id=f"e{i}") for i in range(1001)]}, "at most 1000"),
    ],
)
def test_bad_batch_envelope(body, message):
    errors = errors_of(body)
    assert len(errors) == 1
    assert errors[0][0] is None
    assert message in errors[0][2]


def test_raw_id_number_is_never_echoed():
    _, errors = validate_body(event(subject="001203004567"), CATALOG, NOW)
    assert all("001203004567" not in e.message for e in errors)


def test_scope_by_subtree_and_indicator():
    events, _ = validate_body(event(), CATALOG, NOW)
    e = events[0]
    assert out_of_scope(e, CATALOG, frozenset({"001"}), frozenset()) is None
    assert out_of_scope(e, CATALOG, frozenset(), frozenset({"cccd_collected"})) is None
    assert "unit 00004" in (out_of_scope(e, CATALOG, frozenset({"002"}), frozenset()) or "")
    assert "indicator" in (
        out_of_scope(e, CATALOG, frozenset(), frozenset({"eid_activated_l2"})) or ""
    )


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(2999, 1, 1),
        timezones=st.sampled_from([UTC, None]),
    ),
    st.integers(-12 * 60, 14 * 60),
)
def test_rfc3339_round_trip(moment, offset_minutes):
    from datetime import timezone

    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    assert parse_timestamp(aware.isoformat()) == aware


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_any_json_gets_events_or_errors_never_an_exception(body):
    events, errors = validate_body(body, CATALOG, NOW)
    assert bool(events) != bool(errors)
