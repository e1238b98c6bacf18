"""Ingest and the aggregator hold an event to the same rules (contract §4.1, stated in
`tiendo.events.rules`): whatever ingest's validation accepts, under the widest limits its
settings allow, the aggregator decodes to the same event, and whatever it refuses for a
field's rule, the aggregator refuses too (dead-lettered, never staged). A record the
aggregator took but PostgreSQL could not store stalled its partition for good."""

from datetime import UTC, datetime, timedelta
from typing import Any

from annotated_types import Le
from hypothesis import assume, example, given
from hypothesis import strategies as st

from services.ingest.rawids import contains_raw_id
from services.ingest.settings import IngestSettings
from services.ingest.validation import Catalog, Limits, validate_event
from tiendo.events import rules
from tiendo.events.progress_event import Event, Kind, UndecodableEvent, decode, encode

NOW = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
AT = NOW - timedelta(hours=1)
# what an operator may set ingest's limits to, at most
WIDEST = Limits(max_snapshot=rules.SNAPSHOT_CEILING)


def test_ingest_settings_stop_at_the_rules_limits() -> None:
    """An ingest set past these would publish what the aggregator dead-letters."""
    ceilings = {
        name: next(m.le for m in field.metadata if isinstance(m, Le))
        for name, field in IngestSettings.model_fields.items()
        if name.startswith("max_") and name not in ("max_batch", "max_body_bytes")
    }
    assert ceilings == {
        "max_event_id_length": rules.MAX_EVENT_ID_LENGTH,
        "max_unit_length": rules.MAX_UNIT_LENGTH,
        "max_indicator_length": rules.MAX_INDICATOR_LENGTH,
        "max_increment": rules.MAX_INCREMENT,
        "max_snapshot": rules.SNAPSHOT_CEILING,
    }
    assert Limits() == Limits(
        max_event_id_length=rules.MAX_EVENT_ID_LENGTH,
        max_unit_length=rules.MAX_UNIT_LENGTH,
        max_indicator_length=rules.MAX_INDICATOR_LENGTH,
        max_increment=rules.MAX_INCREMENT,
        max_snapshot=rules.MAX_SNAPSHOT,
    )


def _near(pattern: str, alphabet: str, longest: int) -> st.SearchStrategy[str]:
    """A code that keeps its rule, or one a character or a length past it."""
    return (
        st.from_regex(pattern, fullmatch=True)
        | st.text(alphabet, min_size=longest - 1, max_size=longest + 2)
        | st.text(max_size=4)
        | st.sampled_from(["bad\x00id", "00004\x00", "Ａ1", "a b"])
    )


LETTERS = "Aa0_.:-\x00é"
EDGES = [0, 1, -1, 2, 10**6, 10**6 + 1, -(10**6), -(10**6) - 1, 10**15, 10**15 + 1, 2**62 + 1]


@st.composite
def raw_events(draw: st.DrawFn) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "event_id": draw(_near(r"[A-Za-z0-9_.:-]{1,64}", LETTERS, 64)),
        "unit": draw(_near(r"[A-Za-z0-9_.-]{1,32}", LETTERS, 32)),
        "indicator": draw(_near(r"[a-z0-9_]{1,48}", "a0_A\x00", 48)),
        "kind": draw(st.sampled_from([k.value for k in Kind])),
        "value": draw(st.integers(-(2**63), 2**63 - 1) | st.sampled_from(EDGES)),
        "occurred_at": AT.isoformat(),
    }
    subject = draw(
        st.none()
        | st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
        | st.text("0123456789abcdefA\x00", min_size=1, max_size=66)
    )
    if subject is not None:
        raw["subject"] = subject
    return raw


def _decoded(raw: dict[str, Any]) -> Event | None:
    sent = Event(
        raw["event_id"],
        raw["unit"],
        raw["indicator"],
        Kind(raw["kind"]),
        raw["value"],
        AT,
        subject=raw.get("subject"),
        received_at=NOW,
    )
    try:
        return decode(encode(sent, source="registry"))
    except UndecodableEvent:
        return None


def _raw(event_id: str = "e", value: int = 1, **fields: object) -> dict[str, Any]:
    base = {"unit": "00004", "indicator": "i", "kind": "increment", "occurred_at": AT.isoformat()}
    return {**base, "event_id": event_id, "value": value, **fields}


@given(raw_events())
@example(_raw("bad\x00id"))
@example(_raw(kind="snapshot", value=2**62 + 1))
@example(_raw(value=-1))
@example(_raw(kind="snapshot", value=-1))
@example(_raw(unit="a\x00"))
@example(_raw(subject="a\x00"))
@example(_raw(subject="ab" * 32, kind="snapshot"))
def test_what_ingest_accepts_the_aggregator_decodes_and_nothing_else(raw: dict[str, Any]) -> None:
    # refused by ingest for privacy, not for a rule a record can break: the aggregator
    # never sees one (the other fields cannot hold one and keep their rule)
    assume(not contains_raw_id(raw["event_id"]))
    catalog = Catalog({raw["unit"]: ()}, frozenset({raw["indicator"]}))
    accepted, errors = validate_event(raw, 0, catalog, NOW, WIDEST)
    decoded = _decoded(raw)
    assert (accepted is None) == (decoded is None), errors
    if accepted is not None:
        assert decoded == Event(
            accepted.event_id,
            accepted.unit,
            accepted.indicator,
            accepted.kind,
            accepted.value,
            AT,
            accepted.subject,
            NOW,
            "registry",
        )
