"""`occurred_at` takes any number of fraction digits (RFC 3339 sets no bound), kept to the
microsecond as PostgreSQL keeps them; the field's length is bounded, with a precise 422; and
a time's fraction is never taken for a raw ID number."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from devtools.localstack import KafkaBroker
from services.ingest.validation import (
    MAX_TIMESTAMP_LENGTH,
    RAW_ID_MESSAGE,
    TIMESTAMP_MESSAGE,
    parse_timestamp,
)
from tests.ingest.test_ingest_api import event as api_event
from tests.ingest.test_ingest_api import read_topic, serving, settings_for
from tests.ingest.test_validation import errors_of, event
from tests.support.stack import Topics
from tests.support.world import build_world, issue_token
from tiendo.event import decode

FRACTION_OF_TEN = "2023-06-01T08:15:16.1234567890"
AT = datetime(2023, 6, 1, 8, 15, 16, 123456, tzinfo=UTC)


@pytest.mark.parametrize("offset", ["Z", "z", "+00:00", "-00:00"])
@pytest.mark.parametrize("digits", [10, 12, 20, 30])
def test_any_number_of_fraction_digits_is_read_to_the_microsecond(offset: str, digits: int) -> None:
    text = f"2023-06-01T08:15:16.{'123456789' * 4}"[: 20 + digits] + offset
    assert parse_timestamp(text) == AT


@pytest.mark.parametrize("offset", ["Z", "+00:00", "+07:00"])
def test_an_event_with_ten_fraction_digits_is_valid(offset: str) -> None:
    at = FRACTION_OF_TEN + offset
    assert errors_of(event(occurred_at=at)) == []


@pytest.mark.parametrize(
    "at",
    [
        # ahead of the clock, past the horizon, no such day: refused for that, not as an ID
        "2023-06-01T12:10:00.1234567890+00:00",
        "2023-06-01T12:10:00.123456789+00:00",
        "2020-06-01T12:00:00.123456789+00:00",
        "2023-02-29T12:00:00.1234567890+00:00",
    ],
)
def test_a_refused_time_is_never_taken_for_an_id_number(at: str) -> None:
    [(index, field, message)] = errors_of(event(occurred_at=at))
    assert (index, field) == (0, "occurred_at")
    assert message != RAW_ID_MESSAGE


def test_an_over_long_time_is_refused_naming_occurred_at_without_echoing_it() -> None:
    fits = "2023-06-01T08:15:16." + "1" * (MAX_TIMESTAMP_LENGTH - 26) + "+00:00"
    assert len(fits) == MAX_TIMESTAMP_LENGTH
    assert errors_of(event(occurred_at=fits)) == []
    for too_long in (fits[:20] + "1" + fits[20:], "2023-06-01T08:15:16." + "9" * 100_000 + "Z"):
        assert errors_of(event(occurred_at=too_long)) == [(0, "occurred_at", TIMESTAMP_MESSAGE)]
    assert str(MAX_TIMESTAMP_LENGTH) in TIMESTAMP_MESSAGE


def test_an_id_number_sent_as_the_time_is_still_refused_as_one() -> None:
    assert errors_of(event(occurred_at="001203004567")) == [(0, "occurred_at", RAW_ID_MESSAGE)]


async def test_ingest_accepts_ten_fraction_digits_and_publishes_microseconds(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    moment = datetime.now(UTC).replace(microsecond=654321) - timedelta(minutes=1)
    await build_world(database, starts_at=moment - timedelta(days=1))
    token = await issue_token(database, units=["001"], indicators=["cccd_collected"])
    at = moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "9876+00:00"
    too_long = at[:20] + "1" * MAX_TIMESTAMP_LENGTH + at[20:]
    async with serving(settings_for(database, kafka.bootstrap, topics), token) as client:
        r = await client.post("/v1/events", json=api_event(occurred_at=at))
        assert (r.status_code, r.json()) == (202, {"accepted": 1}), r.text
        r = await client.post("/v1/events", json=api_event(1, occurred_at=too_long))
        assert r.status_code == 422, r.text
        assert [(e["index"], e["field"]) for e in r.json()["errors"]] == [(0, "occurred_at")]
    [record] = await asyncio.wait_for(read_topic(kafka.bootstrap, topics.events, at_least=1), 120)
    assert decode(record.value).occurred_at == moment
