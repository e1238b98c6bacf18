"""Protobuf Timestamps of aware datetimes and back, for every message on the topics."""

from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(at: datetime) -> Timestamp:
    """A protobuf Timestamp of an aware datetime."""
    ts = Timestamp()
    set_timestamp(ts, at)
    return ts


def set_timestamp(ts: Timestamp, at: datetime) -> None:
    """Make `ts` (a message's field) the time `at`: in place, which is twice as fast as
    building a Timestamp and copying it in (ingest does it twice per event)."""
    # Integer arithmetic: protobuf's FromDatetime/ToDatetime are pure Python and were a
    # tenth of ingest's and the aggregator's CPU (bench flame graphs). A timedelta keeps
    # its seconds in [0, 86400) and microseconds in [0, 10**6) whatever the sign of its
    # days: the floor a Timestamp wants (nanos never negative), without dividing one
    # timedelta by another, which took twice as long.
    since = at - _EPOCH
    ts.seconds = since.days * 86_400 + since.seconds
    ts.nanos = since.microseconds * 1000


def datetime_of(ts: Timestamp) -> datetime:
    """The UTC datetime of a protobuf Timestamp."""
    # (days, seconds, microseconds) by position: a third faster than by keyword, and the
    # aggregator reads two timestamps of every event it consumes
    return _EPOCH + timedelta(0, ts.seconds, ts.nanos // 1000)


def shared_datetime_of(ts: Timestamp) -> datetime:
    """`datetime_of` of a time that runs of messages share, made once per distinct time:
    the events of one ingest request share their `received_at`, and making it again for
    each was a tenth of the aggregator's decoding (`bench.decode_cost`)."""
    return _utc_of(ts.seconds, ts.nanos)


@lru_cache(maxsize=64)
def _utc_of(seconds: int, nanos: int) -> datetime:
    # (datetimes are immutable: the events that share one cannot tell)
    return _EPOCH + timedelta(0, seconds, nanos // 1000)


@lru_cache(maxsize=256)
def offset_zone(seconds: int) -> timezone:
    """The fixed zone of a UTC offset in seconds (shared: events carry few offsets)."""
    return UTC if seconds == 0 else timezone(timedelta(seconds=seconds))
