"""The `unit-progress` message: the latest figures of one (campaign, unit, indicator) as
plain data, built from and into its protobuf binding (`UnitProgress`) for Kafka.

The aggregator publishes one after every commit that moved the key (compacted by
"campaign/unit/indicator"); the notifier takes in which keys moved and judges them on the
board. It carries the plan inputs too, for readers that judge without the database.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from tiendo.events.timestamps import datetime_of, timestamp
from tiendo.events.v1 import events_pb2


class UndecodableProgress(ValueError):
    """A `unit-progress` record that is not an update this version can read (a tombstone,
    bytes that are no UnitProgress, a time out of range, a key without its parts)."""


@dataclass(frozen=True, slots=True)
class UnitProgress:
    campaign_id: str
    unit: str
    indicator: str
    value: int
    baseline: int
    target: int
    starts_at: datetime
    deadline: datetime  # the unit's own, else the campaign's
    last_event_at: datetime | None
    computed_at: datetime
    behind_threshold: float
    stale_after: timedelta
    level: int
    parent: str | None
    unit_name: str
    timezone: str

    @property
    def key(self) -> bytes:
        """The record key: the topic is compacted to the latest message per key."""
        return f"{self.campaign_id}/{self.unit}/{self.indicator}".encode()


def to_message(update: UnitProgress) -> events_pb2.UnitProgress:
    """The UnitProgress binding of an update."""
    message = events_pb2.UnitProgress(
        campaign_id=update.campaign_id,
        unit=update.unit,
        indicator=update.indicator,
        value=update.value,
        baseline=update.baseline,
        target=update.target,
        starts_at=timestamp(update.starts_at),
        deadline=timestamp(update.deadline),
        computed_at=timestamp(update.computed_at),
        behind_threshold=update.behind_threshold,
        stale_after_seconds=int(update.stale_after.total_seconds()),
        level=update.level,
        parent=update.parent or "",
        unit_name=update.unit_name,
        timezone=update.timezone,
    )
    if update.last_event_at is not None:
        message.last_event_at.CopyFrom(timestamp(update.last_event_at))
    return message


def from_message(message: events_pb2.UnitProgress) -> UnitProgress:
    """The update a parsed UnitProgress carries."""
    return UnitProgress(
        campaign_id=message.campaign_id,
        unit=message.unit,
        indicator=message.indicator,
        value=message.value,
        baseline=message.baseline,
        target=message.target,
        starts_at=datetime_of(message.starts_at),
        deadline=datetime_of(message.deadline),
        last_event_at=(
            datetime_of(message.last_event_at) if message.HasField("last_event_at") else None
        ),
        computed_at=datetime_of(message.computed_at),
        behind_threshold=message.behind_threshold,
        stale_after=timedelta(seconds=message.stale_after_seconds),
        level=message.level,
        parent=message.parent or None,
        unit_name=message.unit_name,
        timezone=message.timezone,
    )


def encode(update: UnitProgress) -> bytes:
    """Serialise for the `unit-progress` topic."""
    return to_message(update).SerializeToString()


def decode(payload: bytes | None) -> UnitProgress:
    """Parse a `unit-progress` record value; UndecodableProgress if it is none."""
    if payload is None:
        raise UndecodableProgress("a tombstone (no value)")
    message = events_pb2.UnitProgress()
    try:
        message.ParseFromString(payload)
    except Exception as exc:  # protobuf raises DecodeError and, for some inputs, others
        raise UndecodableProgress(f"not a UnitProgress: {exc}") from exc
    if not message.campaign_id or not message.unit or not message.indicator:
        raise UndecodableProgress("missing campaign_id, unit or indicator")
    try:
        return from_message(message)
    except (OverflowError, ValueError) as exc:  # a time out of datetime's range
        raise UndecodableProgress(f"bad timestamp: {exc}") from exc
