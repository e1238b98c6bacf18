"""One rule for `occurred_at`'s UTC offset (`tiendo.events.rules.offset_allowed`): RFC 3339
writes ±HH:MM, so whole minutes under a day. Ingest refuses any other offset, JSON or
protobuf, with a 422 naming the field in the rule's words, and the aggregator's decoder
refuses a record carrying one (dead-lettered, not counted): before, ingest refused
`+07:00:30` while the decoder counted an offset of 25,230 s, two ideas of an event."""

import re
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from devtools.localstack import KafkaBroker
from services.ingest.protobuf import decode_batch
from services.ingest.validation import Catalog, Limits, validate_event
from tests.counting.test_event_path import Pipeline, pipeline, value_of
from tests.ingest.test_ingest_api import event, ingest
from tests.support.stack import Topics, eventually
from tiendo.events import rules
from tiendo.events.progress_event import Event, Kind, UndecodableEvent, decode, encode, to_message
from tiendo.events.v1 import events_pb2

__all__ = ["ingest", "pipeline"]  # the fixtures

# RFC 3339 §5.6: time-numoffset = ("+" / "-") time-hour ":" time-minute (hours 00-23)
MOST = 23 * 3600 + 59 * 60
OFFSET_RULE = "the UTC offset must be ±HH:MM, whole minutes from -23:59 to +23:59 (RFC 3339)"
NOW = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
# a wall time a day before NOW: whatever the offset (under 24 h), its instant is in the past
WALL = "2026-03-01T08:30:00"
AT = NOW - timedelta(hours=1)
CATALOG = Catalog({"00004": ()}, frozenset({"cccd_collected"}))
JSON = {"Content-Type": "application/json"}
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def offset_text(seconds: int) -> str:
    """`seconds` written as an RFC 3339 offset would be, with `:SS` when it has seconds."""
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours:02}:{minutes:02}" + (f":{secs:02}" if secs else "")


def rfc3339_allows(seconds: int) -> bool:
    return seconds % 60 == 0 and abs(seconds) <= MOST


def test_the_rule_and_its_pattern_agree_on_every_offset_text() -> None:
    assert rules.OFFSET_RULE == OFFSET_RULE
    pattern = re.compile(rules.OFFSET_PATTERN)
    for sign in "+-":
        for hours in range(100):
            for minutes in range(100):
                text = f"{sign}{hours:02}:{minutes:02}"
                seconds = (-1 if sign == "-" else 1) * (hours * 3600 + minutes * 60)
                assert rules.offset_allowed(seconds) == rfc3339_allows(seconds)
                assert bool(pattern.fullmatch(text)) == (minutes < 60 and rfc3339_allows(seconds))


def _json_accepts(seconds: int) -> tuple[bool, list[tuple[str, str]]]:
    raw = {**event(), "occurred_at": WALL + offset_text(seconds)}
    accepted, errors = validate_event(raw, 0, CATALOG, NOW, Limits())
    return accepted is not None, [(e.field, e.message) for e in errors]


def _protobuf_accepts(seconds: int) -> tuple[bool, list[tuple[str, str]]]:
    batch = events_pb2.EventBatch()
    message = batch.events.add(event_id="pb", unit="00004", indicator="cccd_collected", value=1)
    message.occurred_at.FromDatetime(AT)
    message.occurred_at_offset_seconds = seconds
    decoded = decode_batch(batch.SerializeToString())
    accepted, errors = validate_event(decoded.items[0], 0, CATALOG, NOW, Limits())
    problems = [(e.field, e.message) for e in [*decoded.errors, *errors]]
    return accepted is not None and not decoded.errors, problems


_RECORD = to_message(Event("e", "00004", "cccd_collected", Kind.INCREMENT, 1, AT, received_at=NOW))


def _decoder_accepts(seconds: int) -> tuple[bool, str]:
    _RECORD.occurred_at_offset_seconds = seconds
    try:
        decode(_RECORD.SerializeToString())
    except UndecodableEvent as exc:
        return False, str(exc)
    return True, ""


def test_ingest_json_ingest_protobuf_and_the_decoder_agree_on_every_offset() -> None:
    # every whole minute of two days of offsets and past them, and every seventh second
    # (seven and sixty share no factor: each second of a minute is met, at every hour)
    minutes = range(-86_460, 86_461, 60)
    edges = [s + d for s in (0, 7 * 3600, MOST, -MOST, 86_400, -86_400) for d in range(-61, 62)]
    for seconds in sorted({*minutes, *range(-86_401, 86_402, 7), *edges}):
        allowed = rfc3339_allows(seconds)
        by_json, json_errors = _json_accepts(seconds)
        by_protobuf, protobuf_errors = _protobuf_accepts(seconds)
        by_decoder, reason = _decoder_accepts(seconds)
        assert by_json == by_protobuf == by_decoder == allowed, (seconds, json_errors, reason)
        if not allowed:
            assert json_errors == [("occurred_at", OFFSET_RULE)]
            assert protobuf_errors == [("occurred_at_offset_seconds", OFFSET_RULE)]
            # a day or more cannot even be a zone; under a day it is the rule's refusal
            if abs(seconds) < 86_400:
                assert reason == f"occurred_at_offset_seconds: {OFFSET_RULE}"


def test_an_allowed_offset_is_kept_as_written() -> None:
    for seconds in (0, 7 * 3600, -(3 * 3600 + 30 * 60), MOST, -MOST):
        sent = Event(
            "e", "00004", "i", Kind.INCREMENT, 1, AT.astimezone(_zone(seconds)), received_at=NOW
        )
        got = decode(encode(sent))
        assert got.occurred_at.utcoffset() == timedelta(seconds=seconds)


def _zone(seconds: int) -> timezone:
    return timezone(timedelta(seconds=seconds))


async def test_an_offset_with_seconds_is_a_422_naming_occurred_at(
    ingest: httpx.AsyncClient,
) -> None:
    at = (datetime.now(UTC) - timedelta(hours=1)).astimezone(_zone(7 * 3600))
    for written in (at.isoformat() + ":30", at.isoformat()[:-6] + "+24:00"):
        r = await ingest.post("/v1/events", json=event("secs", occurred_at=written), headers=JSON)
        assert r.status_code == 422, r.text
        assert r.json()["errors"] == [{"index": 0, "field": "occurred_at", "message": OFFSET_RULE}]
    # and the same time at whole minutes is taken
    r = await ingest.post("/v1/events", json=event("mins", occurred_at=at.isoformat()))
    assert r.status_code == 202, r.text


async def test_a_protobuf_offset_with_seconds_is_a_422_in_the_same_words(
    ingest: httpx.AsyncClient,
) -> None:
    batch = events_pb2.EventBatch()
    message = batch.events.add(event_id="pb", unit="00004", indicator="cccd_collected", value=1)
    message.occurred_at.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
    message.occurred_at_offset_seconds = 7 * 3600 + 30
    r = await ingest.post("/v1/events", content=batch.SerializeToString(), headers=PROTOBUF)
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [
        {"index": 0, "field": "occurred_at_offset_seconds", "message": OFFSET_RULE}
    ]


async def test_a_record_with_an_offset_in_seconds_is_dead_lettered_not_counted(
    pipeline: Pipeline, database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    """A record that reached the topic by another path than ingest (a replay, a tool)."""
    ingest, aggregator = pipeline
    at = datetime.now(UTC) - timedelta(hours=1)
    stray = to_message(Event("stray", "00004", "cccd_collected", Kind.INCREMENT, 5, at))
    stray.received_at.FromDatetime(at)
    stray.occurred_at_offset_seconds = 7 * 3600 + 30
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topics.events, stray.SerializeToString(), key=b"00004")
    finally:
        await producer.stop()
    r = await ingest.post("/v1/events", json=event("after", occurred_at=at.isoformat()))
    assert r.status_code == 202, r.text

    async def dead_lettered() -> list[str]:
        conn = await asyncpg.connect(database)
        try:
            reasons = [r["reason"] for r in await conn.fetch("SELECT reason FROM dead_letters")]
        finally:
            await conn.close()
        assert reasons, "no dead letter yet"
        return reasons

    async def counted() -> None:
        assert (await value_of(aggregator, "00004"))["value"] >= 1

    await eventually(counted)
    reasons = await eventually(dead_lettered, timeout=120)
    assert reasons == [f"occurred_at_offset_seconds: {OFFSET_RULE}"]
    assert (await value_of(aggregator, "00004"))["value"] == 1
