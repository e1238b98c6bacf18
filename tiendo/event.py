"""The progress event's old address: it lives beside its protobuf binding now
(`tiendo.events.progress_event`); kept for the importers across the house."""

from tiendo.events.progress_event import (
    MAX_EVENT_ID_LENGTH,
    MAX_INCREMENT,
    SUBJECT_LENGTH,
    Event,
    Kind,
    UndecodableEvent,
    decode,
    encode,
    from_message,
    to_json,
    to_message,
)

__all__ = [
    "MAX_EVENT_ID_LENGTH",
    "MAX_INCREMENT",
    "SUBJECT_LENGTH",
    "Event",
    "Kind",
    "UndecodableEvent",
    "decode",
    "encode",
    "from_message",
    "to_json",
    "to_message",
]
