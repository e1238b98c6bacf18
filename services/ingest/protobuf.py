"""`Content-Type: application/x-protobuf` bodies: an `EventBatch` turned into the mappings
the JSON path produces, so both go through the same validator and get the same errors.

What proto3 cannot say is decided here, once: an empty string or an unset `kind` is an
absent field (so `kind` defaults to increment), but `value` has no default of 1 — proto3
cannot tell 0 from unset, and counting a forgotten 0 as 1 would be worse than refusing it.
`received_at` and `source` are ingest's to set; a client that sets them is told so.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from services.ingest.rawids import contains_raw_id
from services.ingest.validation import DECODER_REFUSED, RAW_ID_MESSAGE, FieldError
from tiendo.events import rules
from tiendo.events.v1 import events_pb2

_KINDS = {
    events_pb2.EVENT_KIND_INCREMENT: "increment",
    events_pb2.EVENT_KIND_SNAPSHOT: "snapshot",
}
# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


class MalformedProtobuf(ValueError):
    """The body is not a serialised EventBatch."""


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    items: list[dict[str, Any]]
    errors: list[FieldError]  # problems only protobuf can have, by index


def decode_batch(payload: bytes) -> DecodedBatch:
    """Parse an EventBatch; raise MalformedProtobuf when it is not one."""
    batch = events_pb2.EventBatch()
    try:
        batch.ParseFromString(payload)
    except DecodeError as exc:
        raise MalformedProtobuf(str(exc) or "not an EventBatch") from exc
    errors: list[FieldError] = []
    if len(UnknownFieldSet(batch)):
        errors.append(FieldError(None, "", "unknown field in EventBatch"))
    items = []
    for index, message in enumerate(batch.events):
        item, problems = _item(message)
        items.append(item)
        errors.extend(FieldError(index, name, text) for name, text in problems)
    return DecodedBatch(items, errors)


def _item(m: events_pb2.ProgressEvent) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    item: dict[str, Any] = {"value": m.value}
    problems: list[tuple[str, str]] = []
    for name in ("event_id", "unit", "indicator", "subject"):
        text = getattr(m, name)
        if text:
            item[name] = text
    if m.kind != events_pb2.EVENT_KIND_UNSPECIFIED:
        # an unknown number stays a number, which the validator refuses as a kind
        item["kind"] = _KINDS.get(m.kind, m.kind)
    if m.HasField("occurred_at"):
        occurred_at, problem = _occurred_at(m)
        if problem is not None:
            problems.append(problem)
            # sent, and refused here: not "required" as well
            item["occurred_at"] = DECODER_REFUSED
        else:
            item["occurred_at"] = occurred_at
    if m.HasField("received_at"):
        problems.append(("received_at", "set by ingest; leave it empty"))
    if m.source:
        # refused either way; a raw ID number is named as such
        problems.append(
            (
                "source",
                RAW_ID_MESSAGE if contains_raw_id(m.source) else "set by ingest; leave it empty",
            )
        )
    if len(UnknownFieldSet(m)):
        problems.append(("", "unknown field in ProgressEvent"))
    return item, problems


def _occurred_at(m: events_pb2.ProgressEvent) -> tuple[datetime | None, tuple[str, str] | None]:
    offset = m.occurred_at_offset_seconds
    if not rules.offset_allowed(offset):
        return None, ("occurred_at_offset_seconds", rules.OFFSET_RULE)
    ts = m.occurred_at
    if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS or not 0 <= ts.nanos < 1_000_000_000:
        return None, ("occurred_at", "must be a valid google.protobuf.Timestamp")
    try:
        at = ts.ToDatetime(tzinfo=UTC).astimezone(timezone(timedelta(seconds=offset)))
    except (OverflowError, ValueError):
        # within the Timestamp range, but not representable once the offset is applied
        return None, ("occurred_at", "must be a valid google.protobuf.Timestamp")
    return at, None
