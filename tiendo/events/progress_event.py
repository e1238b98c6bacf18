"""The `progress-events` message: the progress event (contract §4) as plain data, built
from and into its protobuf binding (`ProgressEvent`) for Kafka."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tiendo.events.rules import MAX_EVENT_ID_LENGTH, MAX_INCREMENT, SUBJECT_LENGTH, record_problem
from tiendo.events.timestamps import datetime_of, offset_zone, set_timestamp, shared_datetime_of
from tiendo.events.v1 import events_pb2

__all__ = [
    # the limits' old address, kept for their importers (`tiendo.event`)
    "MAX_EVENT_ID_LENGTH",
    "MAX_INCREMENT",
    "SUBJECT_LENGTH",
    "Event",
    "Kind",
    "UndecodableEvent",
    "decode",
    "encode",
    "encode_all",
    "from_message",
    "to_json",
    "to_message",
]


class Kind(StrEnum):
    INCREMENT = "increment"
    SNAPSHOT = "snapshot"


_KIND_TO_PB = {
    Kind.INCREMENT: events_pb2.EVENT_KIND_INCREMENT,
    Kind.SNAPSHOT: events_pb2.EVENT_KIND_SNAPSHOT,
}
_PB_TO_KIND = {v: k for k, v in _KIND_TO_PB.items()}


class UndecodableEvent(ValueError):
    """A Kafka record that is not a ProgressEvent this version can read."""


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    unit: str
    indicator: str
    kind: Kind
    value: int
    occurred_at: datetime
    subject: str | None = None
    received_at: datetime | None = None
    source: str = ""


def to_json(event: Event) -> dict[str, object]:
    """The upstream JSON form of an event (contract §4.1), as a client would POST it."""
    body: dict[str, object] = {
        "event_id": event.event_id,
        "unit": event.unit,
        "indicator": event.indicator,
        "kind": event.kind.value,
        "value": event.value,
        "occurred_at": event.occurred_at.isoformat(),
    }
    if event.subject:
        body["subject"] = event.subject
    return body


def _own_fields(event: Event) -> events_pb2.ProgressEvent:
    """The ProgressEvent of an event's own fields, without `source` and `received_at`."""
    offset = event.occurred_at.utcoffset()
    message = events_pb2.ProgressEvent(
        event_id=event.event_id,
        unit=event.unit,
        indicator=event.indicator,
        kind=_KIND_TO_PB[event.kind],
        value=event.value,
        occurred_at_offset_seconds=0 if offset is None else int(offset.total_seconds()),
        subject=event.subject or "",
    )
    set_timestamp(message.occurred_at, event.occurred_at)
    return message


def _set_delivery(message: events_pb2.ProgressEvent, source: str, at: datetime | None) -> None:
    """Who sent the event (the token's name) and when ingest received it."""
    message.source = source
    if at is not None:
        set_timestamp(message.received_at, at)


def to_message(event: Event, *, source: str | None = None) -> events_pb2.ProgressEvent:
    """The ProgressEvent of an event (`source` in place of the event's)."""
    message = _own_fields(event)
    _set_delivery(message, event.source if source is None else source, event.received_at)
    return message


def encode(event: Event, *, source: str | None = None) -> bytes:
    """Serialise for the `progress-events` topic (`source` in place of the event's)."""
    return to_message(event, source=source).SerializeToString()


def encode_all(events: Sequence[Event], *, source: str) -> list[bytes]:
    """`encode(event, source=source)` of each event, for the events of one request.

    They share `source` and, nearly always, `received_at`: that part is serialised once
    per distinct `received_at` and appended to each event's own. A parser merges the
    serialisations of one message laid end to end (protobuf's wire format), so each
    record reads back as `encode`'s. Setting that second timestamp was a third of the
    encoding, and the encoding 29 % of ingest's samples in a quick benchmark's flame graph
    (5 December 2026).
    """
    delivered: dict[datetime | None, bytes] = {}
    out: list[bytes] = []
    for event in events:
        tail = delivered.get(event.received_at)
        if tail is None:
            shared = events_pb2.ProgressEvent()
            _set_delivery(shared, source, event.received_at)
            tail = delivered[event.received_at] = shared.SerializeToString()
        out.append(_own_fields(event).SerializeToString() + tail)
    return out


def from_message(message: events_pb2.ProgressEvent) -> Event:
    """Plain event of a parsed ProgressEvent; UndecodableEvent if it breaks the schema or
    a rule of contract §4.1 (`rules.record_problem`, checked last: a record refused before
    those rules existed is refused in the same words)."""
    # (each field read once: a read of a parsed message's field builds a new Python object)
    kind = _PB_TO_KIND.get(message.kind)
    event_id, unit, indicator = message.event_id, message.unit, message.indicator
    if kind is None or not event_id or not unit or not indicator:
        raise UndecodableEvent("missing event_id, unit, indicator or kind")
    if not message.HasField("occurred_at"):
        raise UndecodableEvent("missing occurred_at")
    offset = message.occurred_at_offset_seconds
    try:
        occurred_at = datetime_of(message.occurred_at).astimezone(offset_zone(offset))
        received_at = (
            shared_datetime_of(message.received_at) if message.HasField("received_at") else None
        )
    except (OverflowError, ValueError) as exc:  # a time or offset out of datetime's range
        raise UndecodableEvent(f"bad timestamp: {exc}") from exc
    value, subject, source = message.value, message.subject, message.source
    # Refused here, not by PostgreSQL: a record its batch's transaction cannot store stalls
    # the partition (the consumer restarts on the same batch), where a dead letter does not.
    # An offset RFC 3339 cannot write (`+07:00:30`) is refused as ingest refuses it: a
    # record that reached the topic another way is dead-lettered, not counted.
    problem = record_problem(
        event_id,
        unit,
        indicator,
        kind is Kind.INCREMENT,
        value,
        subject,
        source,
        offset_seconds=offset,
    )
    if problem is not None:
        raise UndecodableEvent(problem)
    return Event(
        event_id=event_id,
        unit=unit,
        indicator=indicator,
        kind=kind,
        value=value,
        occurred_at=occurred_at,
        subject=subject or None,
        received_at=received_at,
        source=source,
    )


def decode(payload: bytes) -> Event:
    """Parse a `progress-events` record value."""
    message = events_pb2.ProgressEvent()
    try:
        message.ParseFromString(payload)
    except Exception as exc:  # protobuf raises DecodeError and, for some inputs, others
        raise UndecodableEvent(f"not a ProgressEvent: {exc}") from exc
    return from_message(message)
