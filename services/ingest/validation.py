"""Validation of upstream events (contract §4.1): pure, no I/O, no clock, every problem reported.

A batch is atomic at validation: the caller publishes nothing unless the error list is
empty. Messages never echo a rejected value: any field may hold a raw identity number, and
whatever a client sent by mistake must not travel further (logs, dashboards) in an error.
"""

import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from services.ingest.rawids import contains_raw_id
from tiendo.event import Event, Kind
from tiendo.events import rules
from tiendo.events.rules import (
    EVENT_ID_CHARS,
    INDICATOR_CHARS,
    MAX_EVENT_ID_LENGTH,
    MAX_INCREMENT,
    MAX_INDICATOR_LENGTH,
    MAX_SNAPSHOT,
    MAX_UNIT_LENGTH,
    SUBJECT_PATTERN,
    UNIT_CHARS,
)
from tiendo.unit_keys import TREE_ZONE, admin_code_of

# The field rules of contract §4.1 are stated in `tiendo.events.rules`, which the
# aggregator holds every record to as well; here they are worded for the client.
__all__ = [
    "EVENT_ID_CHARS",
    "INDICATOR_CHARS",
    "MAX_EVENT_ID_LENGTH",
    "MAX_INCREMENT",
    "MAX_INDICATOR_LENGTH",
    "MAX_SNAPSHOT",
    "MAX_UNIT_LENGTH",
    "SUBJECT_PATTERN",
    "UNIT_CHARS",
]
# An RFC 3339 time is 20-25 characters without its fraction: this leaves room for more
# than 30 fraction digits (nanoseconds need 9), and bounds the work a hostile one costs.
MAX_TIMESTAMP_LENGTH = 64

EVENT_FIELDS = frozenset(
    {"event_id", "unit", "indicator", "kind", "value", "occurred_at", "subject"}
)
# An offset's hours and minutes are bounded here (`rules.OFFSET_PATTERN`, the offset rule
# the aggregator holds records to), not after the match: the common case then needs none
# of the groups. RFC 3339 puts no bound on the fraction's digits; the field's length
# bounds them (MAX_TIMESTAMP_LENGTH).
_RFC3339 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]+)?"
    rf"(?:([Zz])|{rules.OFFSET_PATTERN})"
)
# The shape of an RFC 3339 time whatever its offset's digits: one the pattern refuses for
# its offset alone (`+07:00:30`, `+24:00`, `+0700`, `+07`) is told so in the offset rule's
# words. Only a refused time is matched against it.
_TIME_SHAPE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2}){0,2})"
)
_FLOAT_INTEGER_LIMIT = 2.0**63

# Bounds on what one response lists, so a hostile body cannot make a huge one.
MAX_UNKNOWN_FIELDS_LISTED = 5
MAX_ERRORS_LISTED = 1000
MAX_FIELD_NAME_ECHO = 64


@dataclass(frozen=True, slots=True)
class Successor:
    """A unit a split one's people went to: its key, official code and name."""

    key: str
    code: str
    name: str

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "code": self.code, "name": self.name}


@dataclass(frozen=True, slots=True)
class FieldError:
    index: int | None
    field: str
    message: str
    # a retired, split unit: the units the sender must choose from
    successors: tuple[Successor, ...] = ()


@dataclass(frozen=True, slots=True)
class UnitVersion:
    """What an official code meant over `[valid_from, valid_to)` (None: unbounded), and
    where its people went when it closed (docs/units-over-time.md)."""

    key: str
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    # until then, events naming the retired code count to `whole`, its one successor
    grace_until: datetime | None = None
    whole: str | None = None
    successors: tuple[Successor, ...] = ()

    def covers(self, at: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= at) and (
            self.valid_to is None or at < self.valid_to
        )


class Attribution(NamedTuple):
    """The version a sent code names at a moment (`key`), or why none: `successors` when
    it was split, `retired_at` when it was closed before that moment. (A tuple: one is
    made for every event validated, and a tuple is made several times faster.)"""

    key: str | None
    successors: tuple[Successor, ...] = ()
    retired_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Catalog:
    """What events may refer to: units by version key (with their ancestors' keys), the
    versions of each official code, and indicator codes. Without `versions` (a tree that
    never changed, as loaded before versions existed) a code is its only version."""

    units: Mapping[str, tuple[str, ...]]
    indicators: frozenset[str]
    versions: Mapping[str, tuple[UnitVersion, ...]] = field(default_factory=dict)

    def attribute(self, code: str, at: datetime) -> Attribution:
        """The version `code` meant at `at`: the one in force then; else, within the
        grace period of a version that went whole, its successor. A split version's code
        names no one unit (the sender must choose); a retired one past grace, none."""
        versions = self.versions.get(code)
        if versions is None:
            return Attribution(code if code in self.units else None)
        for v in versions:
            if v.covers(at):
                return Attribution(v.key)
        retired = [v for v in versions if v.valid_to is not None and v.valid_to <= at]
        if not retired:
            return Attribution(None)  # not yet in force
        last = max(retired, key=lambda v: v.valid_to or at)
        if last.whole is not None and last.grace_until is not None and at < last.grace_until:
            return Attribution(last.whole)
        split = last.successors if last.whole is None else ()
        return Attribution(None, split, last.valid_to)

    def lineage(self, unit: str, at: datetime | None = None) -> set[str]:
        """The unit's version (at `at`, for a sent code) and its ancestors, by key and by
        official code: a scope may name either."""
        key = self.attribute(unit, at).key if at is not None else unit
        keys = {key or unit, *self.units.get(key or unit, ())}
        return keys | {admin_code_of(k) for k in keys}


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits (settings `TIENDO_INGEST_*`); the defaults are contract §4.1's."""

    max_batch: int = 1000
    max_event_id_length: int = MAX_EVENT_ID_LENGTH
    max_unit_length: int = MAX_UNIT_LENGTH
    max_indicator_length: int = MAX_INDICATOR_LENGTH
    max_increment: int = MAX_INCREMENT
    max_snapshot: int = MAX_SNAPSHOT
    future_tolerance: timedelta = timedelta(minutes=5)
    past_horizon: timedelta = timedelta(days=366)
    # error messages, computed once
    messages: dict[str, str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "messages",
            {
                "event_id": rules.event_id_rule(self.max_event_id_length),
                "unit": rules.unit_rule(self.max_unit_length),
                "indicator": rules.indicator_rule(self.max_indicator_length),
                "increment": rules.increment_rule(self.max_increment),
                "snapshot": rules.snapshot_rule(self.max_snapshot),
                "future": f"more than {int(self.future_tolerance.total_seconds())} s in the future",
                "past": f"more than {self.past_horizon.days} days in the past",
            },
        )


# Every field a client may send a string in (an unknown field is refused by its name).
_STRING_FIELDS = ("event_id", "unit", "indicator", "kind", "value", "occurred_at", "subject")
_KINDS = {kind.value: kind for kind in Kind}
UNKNOWN_UNIT = "unknown unit code"
# a code the tree knows, but not at occurred_at: not yet, or retired (past its grace)
UNKNOWN_UNIT_AT = "unknown unit code at occurred_at"
UNKNOWN_INDICATOR = "not in the indicator catalogue"
RAW_ID_MESSAGE = "looks like a raw ID number; send its keyed hash instead"
TIMESTAMP_MESSAGE = (
    f"must be an RFC 3339 timestamp with an offset, at most {MAX_TIMESTAMP_LENGTH} characters"
)
# A field's value in a protobuf item when decoding the body refused it, and said why.
DECODER_REFUSED = object()


def timestamp_problem(text: str) -> str:
    """Why `text`, which `parse_timestamp` refused, is no `occurred_at`."""
    too_long = len(text) > MAX_TIMESTAMP_LENGTH
    if not too_long and _TIME_SHAPE.fullmatch(text) and not _RFC3339.fullmatch(text):
        return rules.OFFSET_RULE
    return TIMESTAMP_MESSAGE


def parse_timestamp(text: str) -> datetime | None:
    """RFC 3339 with an explicit offset and any number of fraction digits (at most
    MAX_TIMESTAMP_LENGTH characters in all), or None. Sub-microsecond digits are truncated,
    as PostgreSQL's timestamptz keeps microseconds."""
    match = _RFC3339.fullmatch(text) if len(text) <= MAX_TIMESTAMP_LENGTH else None
    if match is None:
        return None
    try:
        if text[10] == "T" and text[-1] != "z":
            # What the pattern let through is ISO 8601 that the C parser reads the same
            # way (it too truncates past microseconds), in a third of the time: the
            # common case. It reads neither a lowercase "t" nor "z", which RFC 3339 allows.
            return datetime.fromisoformat(text)
        date, time, fraction, _, sign, hours, minutes = match.groups()
        naive = datetime.fromisoformat(f"{date}T{time}{(fraction or '')[:7]}")
    except ValueError:
        return None
    offset = timedelta(hours=int(hours), minutes=int(minutes)) if sign else timedelta(0)
    return naive.replace(tzinfo=timezone(-offset if sign == "-" else offset))


def _unit_at(code: str, at: datetime, catalog: Catalog, index: int) -> list[FieldError]:
    """Why a known code names no unit at the event's moment (none when it does)."""
    found = catalog.attribute(code, at)
    if found.key is not None:
        return []
    if found.successors and found.retired_at is not None:
        day = found.retired_at.astimezone(TREE_ZONE).date().isoformat()
        named = ", ".join(f"{s.code} {s.name} (key {s.key})" for s in found.successors)
        return [
            FieldError(
                index,
                "unit",
                f"this unit was split on {day}; send the unit the event happened in, one "
                f"of: {named}",
                found.successors,
            )
        ]
    return [FieldError(index, "unit", UNKNOWN_UNIT_AT)]


def _echo(name: str) -> str:
    return name if len(name) <= MAX_FIELD_NAME_ECHO else name[:MAX_FIELD_NAME_ECHO] + "…"


def _named_fields(
    names: Sequence[Any], index: int | None, what: str, message: str
) -> list[FieldError]:
    """An error naming each field of `names` (`what`: "unknown field"), at most
    MAX_UNKNOWN_FIELDS_LISTED of them."""
    extra = sorted(str(k) for k in names)
    # a name is echoed, unless it is itself a raw ID number
    errors = [
        FieldError(index, "", f"{what} whose name looks like a raw ID number")
        if contains_raw_id(n)
        else FieldError(index, _echo(n), message)
        for n in extra
    ]
    if len(errors) > MAX_UNKNOWN_FIELDS_LISTED:
        more = len(errors) - MAX_UNKNOWN_FIELDS_LISTED
        errors = [
            *errors[:MAX_UNKNOWN_FIELDS_LISTED],
            FieldError(index, "", f"{more} more {what}s"),
        ]
    return errors


def _unknown_fields(names: Sequence[Any], index: int | None) -> list[FieldError]:
    return _named_fields(names, index, "unknown field", "unknown field")


DUPLICATE_KEY = "duplicate key: the object names this field more than once"


def duplicate_keys(names: Sequence[str], index: int | None) -> list[FieldError]:
    """The errors of keys an object of the body names more than once (`index`: the
    event's, None for the body's own object). A JSON parser keeps one of the values
    silently; a sender writing two has a bug that would otherwise go unseen."""
    return _named_fields(names, index, "duplicate key", DUPLICATE_KEY)


def is_event_id(value: object, limits: Limits) -> bool:
    """Whether `value` can be an event's id (contract §4.1): what validation accepts, so
    what can ever have been stored and looked up."""
    return rules.is_code(value, rules.EVENT_ID, limits.max_event_id_length)


def _catalogued(
    value: object, pattern: re.Pattern[str], max_length: int, known: Container[str], bad: str
) -> str | None:
    """What is wrong with a code the catalogue must know (a unit, an indicator): None if
    nothing, "" if it is well formed but unknown (each field words that its own way)."""
    if value is None:
        return "required"
    if not rules.is_code(value, pattern, max_length):
        return bad
    return None if value in known else ""


def validate_event(
    raw: object, index: int, catalog: Catalog, now: datetime, limits: Limits
) -> tuple[Event | None, list[FieldError]]:
    """One event of a request: the Event, or the list of what is wrong with it.

    `raw` is a decoded JSON object; protobuf input arrives as the same mapping, except that
    its `occurred_at` is already an aware datetime.
    """
    errors: list[FieldError] = []
    msg = limits.messages

    def bad(name: str, message: str) -> None:
        errors.append(FieldError(index, name, message))

    if not isinstance(raw, dict):
        bad("", "must be a JSON object")
        return None, errors
    if not raw.keys() <= EVENT_FIELDS:
        errors.extend(_unknown_fields(list(raw.keys() - EVENT_FIELDS), index))

    event_id = raw.get("event_id")
    if event_id is None:
        bad("event_id", "required")
    elif not is_event_id(event_id, limits):
        bad("event_id", msg["event_id"])

    unit = raw.get("unit")
    problem = _catalogued(unit, rules.UNIT, limits.max_unit_length, catalog.units, msg["unit"])
    unit_known = problem is None
    if problem is not None:
        bad("unit", problem or UNKNOWN_UNIT)

    indicator = raw.get("indicator")
    limit = limits.max_indicator_length
    problem = _catalogued(indicator, rules.INDICATOR, limit, catalog.indicators, msg["indicator"])
    if problem is not None:
        bad("indicator", problem or UNKNOWN_INDICATOR)

    kind_raw = raw.get("kind", Kind.INCREMENT)
    kind = _KINDS.get(kind_raw) if isinstance(kind_raw, str) else None
    if kind is None:
        bad("kind", "must be 'increment' or 'snapshot'")

    value = raw.get("value", 1 if kind is Kind.INCREMENT else None)
    if kind is Kind.SNAPSHOT and value is None:
        bad("value", "required for a snapshot")
    elif isinstance(value, float) and value.is_integer() and abs(value) >= _FLOAT_INTEGER_LIMIT:
        # an integer too large for 64 bits, which the JSON parser hands over as a float
        bad("value", msg["snapshot"] if kind is Kind.SNAPSHOT else msg["increment"])
    elif not isinstance(value, int) or isinstance(value, bool):
        bad("value", "must be an integer")
    elif kind is Kind.INCREMENT and not rules.increment_in_bounds(value, limits.max_increment):
        bad("value", msg["increment"])
    elif kind is Kind.SNAPSHOT and not rules.snapshot_in_bounds(value, limits.max_snapshot):
        bad("value", msg["snapshot"])

    occurred_raw = raw.get("occurred_at")
    occurred_at: datetime | None = None
    if occurred_raw is None:
        bad("occurred_at", "required")
    elif isinstance(occurred_raw, datetime) and occurred_raw.tzinfo is not None:
        occurred_at = occurred_raw
    elif not isinstance(occurred_raw, str):
        if occurred_raw is not DECODER_REFUSED:
            bad("occurred_at", TIMESTAMP_MESSAGE)
    elif (occurred_at := parse_timestamp(occurred_raw)) is None:
        bad("occurred_at", timestamp_problem(occurred_raw))
    if occurred_at is not None:
        if occurred_at > now + limits.future_tolerance:
            bad("occurred_at", msg["future"])
        elif occurred_at < now - limits.past_horizon:
            bad("occurred_at", msg["past"])
        elif unit_known and isinstance(unit, str):
            errors.extend(_unit_at(unit, occurred_at, catalog, index))

    subject = raw.get("subject")
    if subject is not None:
        if not isinstance(subject, str):
            bad("subject", "must be a string of 64 lowercase hex characters")
        elif not rules.is_subject(subject):
            bad("subject", rules.SUBJECT_RULE)
        elif not rules.subject_allowed(kind is Kind.INCREMENT, value):
            bad("subject", rules.SUBJECT_PLACE_RULE)

    # A raw ID number is refused as such whatever else is wrong with its field. A field
    # that passed its own rule cannot hold one (a catalogue code, a kind, a 64-hex
    # subject), except the free-form event_id: only those are searched, which keeps the
    # search off most of the hot path. A time written as RFC 3339 is never searched, even
    # when refused (too far ahead, no such day, too long, an offset with seconds): its
    # fraction's digits, standing between "." and an offset, would look like an ID number
    # to the search.
    if not errors:
        withheld = ["event_id"] if isinstance(event_id, str) and contains_raw_id(event_id) else []
    else:
        suspects = {"event_id", *(e.field for e in errors)}
        if isinstance(occurred_raw, str) and _TIME_SHAPE.fullmatch(occurred_raw):
            suspects.discard("occurred_at")
        withheld = [
            n
            for n in _STRING_FIELDS
            if n in suspects and isinstance(raw.get(n), str) and contains_raw_id(raw[n])
        ]
    if withheld:
        errors = [e for e in errors if e.field not in withheld]
        errors.extend(FieldError(index, n, RAW_ID_MESSAGE) for n in withheld)
    if errors or occurred_at is None:  # (None alone: the decoder's error says why)
        return None, errors
    assert isinstance(event_id, str)
    assert isinstance(unit, str)
    assert isinstance(indicator, str)
    assert kind is not None
    assert isinstance(value, int)
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


def envelope(body: object, limits: Limits) -> tuple[list[Any], list[FieldError]]:
    """The events of a request body (one event, or {"events": [...]}), or why there are none."""
    if not (isinstance(body, dict) and "events" in body):
        return [body], []
    if body.keys() != {"events"}:
        return [], _unknown_fields(list(body.keys() - {"events"}), None)
    items = body["events"]
    if not isinstance(items, list):
        return [], [FieldError(None, "events", "must be an array of events")]
    return items, batch_size_errors(len(items), limits)


def batch_size_errors(count: int, limits: Limits) -> list[FieldError]:
    if count == 0:
        return [FieldError(None, "events", "must hold at least one event")]
    if count > limits.max_batch:
        return [FieldError(None, "events", f"at most {limits.max_batch} events per request")]
    return []


def validate_items(
    items: Sequence[object], catalog: Catalog, now: datetime, limits: Limits
) -> tuple[list[Event], list[FieldError]]:
    """Every item → its events (in order, repeats included: `repeats.sort_repeats`), or
    every error."""
    events: list[Event] = []
    errors: list[FieldError] = []
    for index, raw in enumerate(items):
        event, problems = validate_event(raw, index, catalog, now, limits)
        errors.extend(problems)
        if event is not None:
            events.append(event)
    return (events, []) if not errors else ([], errors)


def in_scope(
    unit: str | None,
    indicator: str | None,
    catalog: Catalog,
    units: frozenset[str],
    indicators: frozenset[str],
) -> bool:
    """Whether a token scoped to `units` subtrees and `indicators` covers this pair (an
    unknown one only for a token without that limit)."""
    if units and (unit is None or not catalog.lineage(unit) & units):
        return False
    return not indicators or indicator in indicators


def out_of_scope(
    event: Event, catalog: Catalog, units: frozenset[str], indicators: frozenset[str]
) -> list[FieldError]:
    """Why a token scoped to `units` subtrees and `indicators` may not send `event`."""
    problems: list[FieldError] = []
    if units and not catalog.lineage(event.unit, event.occurred_at) & units:
        problems.append(
            FieldError(None, "unit", f"unit {event.unit} is outside this token's scope")
        )
    if indicators and event.indicator not in indicators:
        problems.append(
            FieldError(
                None, "indicator", f"indicator {event.indicator} is outside this token's scope"
            )
        )
    return problems


def scope_errors(
    events: Sequence[Event], catalog: Catalog, units: frozenset[str], indicators: frozenset[str]
) -> list[FieldError]:
    """Every event a token may not send, by index (empty scopes mean everything)."""
    if not units and not indicators:
        return []
    return [
        FieldError(index, p.field, p.message)
        for index, event in enumerate(events)
        for p in out_of_scope(event, catalog, units, indicators)
    ]
