"""Validation of upstream events (SPEC §4.1): pure, no I/O, every problem reported.

A batch is atomic at validation: the caller publishes nothing unless the error list is
empty. Messages never echo a rejected `subject`, which may be a raw identity number.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tiendo.event import MAX_EVENT_ID_LENGTH, MAX_INCREMENT, Event, Kind

MAX_SNAPSHOT = 1_000_000_000
MAX_UNIT_LENGTH = 32
MAX_INDICATOR_LENGTH = 48

EVENT_FIELDS = frozenset(
    {"event_id", "unit", "indicator", "kind", "value", "occurred_at", "subject"}
)
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"
)
_SUBJECT = re.compile(r"[0-9a-f]{64}")
_RAW_ID_NUMBER = re.compile(r"\s*\d{9,12}\s*")


@dataclass(frozen=True, slots=True)
class FieldError:
    index: int | None
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class Catalog:
    """What events may refer to: unit codes (with their ancestors) and indicator codes."""

    units: Mapping[str, tuple[str, ...]]
    indicators: frozenset[str]


def parse_timestamp(text: str) -> datetime | None:
    """RFC 3339 with an explicit offset, or None. Sub-microsecond digits are truncated."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    date, time, fraction, offset = match.groups()
    fraction = (fraction or "")[:7]
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{date}T{time}{fraction}{offset}")
    except ValueError:
        return None


def validate_event(
    raw: object, index: int, catalog: Catalog, now: datetime, future_tolerance: timedelta
) -> tuple[Event | None, list[FieldError]]:
    """One event of a request: the Event, or the list of what is wrong with it."""
    errors: list[FieldError] = []

    def bad(field: str, message: str) -> None:
        errors.append(FieldError(index, field, message))

    if not isinstance(raw, dict):
        bad("", "must be a JSON object")
        return None, errors
    for extra in sorted(str(k) for k in raw.keys() - EVENT_FIELDS):
        bad(extra, "unknown field")

    event_id = raw.get("event_id")
    if event_id is None:
        bad("event_id", "required")
    elif not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
        bad("event_id", f"must be 1-{MAX_EVENT_ID_LENGTH} characters of A-Z a-z 0-9 _ . : -")

    unit = raw.get("unit")
    if unit is None:
        bad("unit", "required")
    elif not isinstance(unit, str) or not unit or len(unit) > MAX_UNIT_LENGTH:
        bad("unit", f"must be a unit code of 1-{MAX_UNIT_LENGTH} characters")
    elif unit not in catalog.units:
        bad("unit", "unknown unit code")

    indicator = raw.get("indicator")
    if indicator is None:
        bad("indicator", "required")
    elif not isinstance(indicator, str) or not indicator or len(indicator) > MAX_INDICATOR_LENGTH:
        bad("indicator", "must be an indicator code")
    elif indicator not in catalog.indicators:
        bad("indicator", "not in the indicator catalogue")

    kind_raw = raw.get("kind", Kind.INCREMENT.value)
    kind: Kind | None = None
    if kind_raw == Kind.INCREMENT.value:
        kind = Kind.INCREMENT
    elif kind_raw == Kind.SNAPSHOT.value:
        kind = Kind.SNAPSHOT
    else:
        bad("kind", "must be 'increment' or 'snapshot'")

    value = raw.get("value", 1 if kind is Kind.INCREMENT else None)
    if kind is Kind.SNAPSHOT and value is None:
        bad("value", "required for a snapshot")
    elif not isinstance(value, int) or isinstance(value, bool):
        bad("value", "must be an integer")
    elif kind is Kind.INCREMENT and (value == 0 or abs(value) > MAX_INCREMENT):
        bad("value", f"an increment must be non-zero, -{MAX_INCREMENT} to {MAX_INCREMENT}")
    elif kind is Kind.SNAPSHOT and not 0 <= value <= MAX_SNAPSHOT:
        bad("value", f"a snapshot must be between 0 and {MAX_SNAPSHOT}")

    occurred_raw = raw.get("occurred_at")
    occurred_at: datetime | None = None
    if occurred_raw is None:
        bad("occurred_at", "required")
    elif (
        not isinstance(occurred_raw, str) or (occurred_at := parse_timestamp(occurred_raw)) is None
    ):
        bad("occurred_at", "must be an RFC 3339 timestamp with an offset")
    elif occurred_at > now + future_tolerance:
        bad("occurred_at", f"more than {int(future_tolerance.total_seconds())} s in the future")

    subject = raw.get("subject")
    if subject is not None:
        if not isinstance(subject, str):
            bad("subject", "must be a string of 64 lowercase hex characters")
        elif _RAW_ID_NUMBER.fullmatch(subject):
            # Raw identity numbers never enter the system; the value is not echoed.
            bad("subject", "looks like a raw ID number; send its keyed hash instead")
        elif not _SUBJECT.fullmatch(subject):
            bad("subject", "must be 64 lowercase hex characters (a keyed hash)")
        elif kind is not Kind.INCREMENT or value != 1:
            bad("subject", "only allowed on increments of value 1")

    if errors:
        return None, errors
    assert isinstance(event_id, str)
    assert isinstance(unit, str)
    assert isinstance(indicator, str)
    assert kind is not None
    assert isinstance(value, int)
    assert occurred_at is not None
    return Event(
        event_id=event_id,
        unit=unit,
        indicator=indicator,
        kind=kind,
        value=value,
        occurred_at=occurred_at,
        subject=subject,
        received_at=now,
    ), []


def validate_body(
    body: object,
    catalog: Catalog,
    now: datetime,
    *,
    max_batch: int = 1000,
    future_tolerance: timedelta = timedelta(minutes=5),
) -> tuple[list[Event], list[FieldError]]:
    """A request body (one event or {"events": [...]}) → its events, or every error."""
    if isinstance(body, dict) and "events" in body:
        if body.keys() != {"events"}:
            extra = sorted(str(k) for k in body.keys() - {"events"})
            return [], [FieldError(None, name, "unknown field") for name in extra]
        items: Any = body["events"]
        if not isinstance(items, list):
            return [], [FieldError(None, "events", "must be an array of events")]
        if not items:
            return [], [FieldError(None, "events", "must hold at least one event")]
        if len(items) > max_batch:
            return [], [FieldError(None, "events", f"at most {max_batch} events per request")]
    else:
        items = [body]
    events: list[Event] = []
    errors: list[FieldError] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(items):
        event, problems = validate_event(raw, index, catalog, now, future_tolerance)
        errors.extend(problems)
        if event is None:
            continue
        if event.event_id in first_index:
            errors.append(
                FieldError(
                    index,
                    "event_id",
                    f"repeats the event_id of events[{first_index[event.event_id]}]",
                )
            )
            continue
        first_index[event.event_id] = index
        events.append(event)
    return (events, []) if not errors else ([], errors)


def out_of_scope(
    event: Event, catalog: Catalog, units: frozenset[str], indicators: frozenset[str]
) -> str | None:
    """Why a token scoped to `units` subtrees and `indicators` may not send `event`, or None."""
    if indicators and event.indicator not in indicators:
        return f"indicator {event.indicator} is outside this token's scope"
    if units:
        lineage = {event.unit, *catalog.units.get(event.unit, ())}
        if not lineage & units:
            return f"unit {event.unit} is outside this token's scope"
    return None
