"""The rules of a progress event's own fields (contract §4.1), stated once.

Ingest's validation (services/ingest/validation.py) holds a client's event to them, each
broken one worded for the client, under limits an operator may narrow (never widen: its
settings stop at these). `progress_event.from_message` holds every record on
`progress-events` to them at the aggregator's door, under the widest limits ingest can be
set to: a record breaking them is dead-lettered with the rule it broke. Staged, it failed
its batch's transaction in PostgreSQL (a NUL in a text column, a sum past bigint), and the
consumer, restarted on the same batch, stalled its partition for good.

Pure: no I/O; a reason never echoes the value (it may hold a raw ID number).
"""

import re

MAX_EVENT_ID_LENGTH = 64
MAX_UNIT_LENGTH = 32
MAX_INDICATOR_LENGTH = 48
MAX_INCREMENT = 1_000_000
# A snapshot's bound by default; ingest's `max_snapshot` may raise it to SNAPSHOT_CEILING,
# so a record is held to that. 10**15 leaves bigint room for thousands of units' sums.
MAX_SNAPSHOT = 1_000_000_000
SNAPSHOT_CEILING = 10**15
SUBJECT_LENGTH = 64

# Character sets of the unit tree and the catalogue (the aggregator's CHECK constraints):
# ASCII only, so look-alike digits and letters fail with a precise message, and no NUL.
EVENT_ID_CHARS = r"[A-Za-z0-9_.:-]"
UNIT_CHARS = r"[A-Za-z0-9_.-]"
INDICATOR_CHARS = r"[a-z0-9_]"
SUBJECT_PATTERN = rf"^[0-9a-f]{{{SUBJECT_LENGTH}}}$"
EVENT_ID = re.compile(EVENT_ID_CHARS + "+")
UNIT = re.compile(UNIT_CHARS + "+")
INDICATOR = re.compile(INDICATOR_CHARS + "+")
SUBJECT = re.compile(SUBJECT_PATTERN[1:-1])

# PostgreSQL's text holds any Unicode but U+0000 (protobuf's strings are valid UTF-8).
NUL = "\x00"


def is_code(value: object, pattern: re.Pattern[str], max_length: int) -> bool:
    """Whether `value` is a string of 1 to `max_length` characters `pattern` matches."""
    return isinstance(value, str) and len(value) <= max_length and bool(pattern.fullmatch(value))


def is_subject(value: object) -> bool:
    return isinstance(value, str) and bool(SUBJECT.fullmatch(value))


def increment_in_bounds(value: int, most: int = MAX_INCREMENT) -> bool:
    return value != 0 and -most <= value <= most


def snapshot_in_bounds(value: int, most: int = SNAPSHOT_CEILING) -> bool:
    return 0 <= value <= most


def subject_allowed(is_increment: bool, value: object) -> bool:
    """A subject stands for one citizen: only on increments of 1."""
    return is_increment and value == 1


def event_id_rule(max_length: int = MAX_EVENT_ID_LENGTH) -> str:
    return f"must be 1-{max_length} characters of A-Z a-z 0-9 _ . : -"


def unit_rule(max_length: int = MAX_UNIT_LENGTH) -> str:
    return f"must be a unit code: 1-{max_length} characters of A-Z a-z 0-9 _ . -"


def indicator_rule(max_length: int = MAX_INDICATOR_LENGTH) -> str:
    return f"must be an indicator code: 1-{max_length} characters of a-z 0-9 _"


def increment_rule(most: int = MAX_INCREMENT) -> str:
    return f"an increment must be non-zero, -{most} to {most}"


def snapshot_rule(most: int = SNAPSHOT_CEILING) -> str:
    return f"a snapshot must be between 0 and {most}"


# A UTC offset (`occurred_at`'s): RFC 3339 writes it ±HH:MM, so it is whole minutes, under
# a day. Python and protobuf can hold seconds (`+07:00:30`, 25,230 s), which RFC 3339
# cannot write back. `offset_allowed` is the rule; OFFSET_PATTERN is the same rule as the
# text of an RFC 3339 offset, for the parser of a client's time (bounds in the pattern
# cost nothing on the hot path). tests/ingest/test_offsets.py holds the two equal.
MAX_OFFSET_SECONDS = 23 * 3600 + 59 * 60
OFFSET_PATTERN = r"([+-])([01][0-9]|2[0-3]):([0-5][0-9])"
OFFSET_RULE = "the UTC offset must be ±HH:MM, whole minutes from -23:59 to +23:59 (RFC 3339)"


def offset_allowed(seconds: int) -> bool:
    """Whether a UTC offset of `seconds` is one RFC 3339 can write."""
    return -MAX_OFFSET_SECONDS <= seconds <= MAX_OFFSET_SECONDS and seconds % 60 == 0


SUBJECT_RULE = f"must be {SUBJECT_LENGTH} lowercase hex characters (a keyed hash)"
SUBJECT_PLACE_RULE = "only allowed on increments of value 1"
SOURCE_RULE = "may not contain NUL (U+0000)"


def record_problem(
    event_id: str,
    unit: str,
    indicator: str,
    is_increment: bool,
    value: int,
    subject: str,
    source: str,
    *,
    offset_seconds: int,
) -> str | None:
    """The first rule a record's fields break, as `field: rule`; None if none. (`subject`
    empty: none, as protobuf has it; the catalogue and the clock are the aggregator's.)"""
    if not is_code(event_id, EVENT_ID, MAX_EVENT_ID_LENGTH):
        return f"event_id: {event_id_rule()}"
    if not is_code(unit, UNIT, MAX_UNIT_LENGTH):
        return f"unit: {unit_rule()}"
    if not is_code(indicator, INDICATOR, MAX_INDICATOR_LENGTH):
        return f"indicator: {indicator_rule()}"
    if is_increment and not increment_in_bounds(value):
        return f"value: {increment_rule()}"
    if not is_increment and not snapshot_in_bounds(value):
        return f"value: {snapshot_rule()}"
    if subject and not is_subject(subject):
        return f"subject: {SUBJECT_RULE}"
    if subject and not subject_allowed(is_increment, value):
        return f"subject: {SUBJECT_PLACE_RULE}"
    if NUL in source:
        return f"source: {SOURCE_RULE}"
    if not offset_allowed(offset_seconds):
        return f"occurred_at_offset_seconds: {OFFSET_RULE}"
    return None
