"""A moment a request names, however far out, gets a 422 that names its field, never a 500
(contract §8: bad input gets a precise 4xx). `0001-01-01T00:00:00+01:00` is valid RFC 3339;
a week before it, or it in UTC, is not a datetime at all (`tiendo.moments`)."""

from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from tests.support.identities import ADMIN
from tests.support.notifier import Harness
from tests.support.stack import Topics, aggregator_settings, running
from tests.support.world import build_world
from tiendo.moments import EARLIEST, LATEST, Day, Moment, checked_day, checked_moment

# RFC 3339 times at the ends of what a datetime holds, with offsets that push them out
FAR_PAST = "0001-01-01T00:00:00+01:00"
FAR_PAST_UTC = "0001-01-01T00:00:00Z"
FAR_FUTURE = "9999-12-31T23:59:59-01:00"

offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(), offsets)
def test_an_accepted_moment_survives_the_reads_arithmetic(naive: datetime, zone: timezone) -> None:
    moment = naive.replace(tzinfo=zone)
    try:
        checked_moment(moment)
    except ValueError:
        assert not EARLIEST <= moment <= LATEST
        return
    # what the reads do with one: in UTC (the database), a run-rate window or a year
    # before it, and its local day in any zone
    moment.astimezone(UTC)
    moment - timedelta(days=400)
    moment + timedelta(days=400)
    moment.astimezone(timezone(timedelta(hours=-23))).date()


@given(st.dates(), offsets)
def test_an_accepted_day_has_a_midnight_in_every_zone(day: date, zone: timezone) -> None:
    try:
        checked_day(day)
    except ValueError:
        assert not EARLIEST.date() <= day <= LATEST.date()
        return
    datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC)
    datetime.combine(day - timedelta(days=1), time(), zone).astimezone(UTC)


def test_a_moment_needs_its_offset_and_is_text() -> None:
    with pytest.raises(ValueError, match="offset"):
        checked_moment(datetime(2025, 7, 1))
    # pydantic alone reads a number as Unix time: 0 would be 1970-01-01
    for number in (0, 1.5e9, False):
        with pytest.raises(ValidationError, match="RFC 3339"):
            TypeAdapter(Moment).validate_python(number)
    assert TypeAdapter(Moment).validate_python("2025-07-01T00:00:00+07:00") == datetime(
        2025, 6, 30, 17, tzinfo=UTC
    )
    # ... and so does it text that is a number (a query parameter is always text), and it
    # takes ISO 8601 forms that are not RFC 3339
    for text in ("1712345678", "-1", "1712345678.5", "2024-04-05T10:00+07:00", "20240405T100000Z"):
        with pytest.raises(ValidationError, match="RFC 3339"):
            TypeAdapter(Moment).validate_python(text)
    for text in ("1712345678", "20240405", "2024-4-5", "2024-04-05T00:00:00Z"):
        with pytest.raises(ValidationError, match="YYYY-MM-DD"):
            TypeAdapter(Day).validate_python(text)
    assert TypeAdapter(Day).validate_python("2025-07-01") == date(2025, 7, 1)


@given(st.datetimes(EARLIEST.replace(tzinfo=None), LATEST.replace(tzinfo=None)), offsets)
def test_every_rfc_3339_form_of_a_moment_is_read_as_that_moment(
    naive: datetime, zone: timezone
) -> None:
    moment = naive.replace(tzinfo=zone)
    if not EARLIEST <= moment <= LATEST:
        return
    read = TypeAdapter(Moment).validate_python
    written = moment.isoformat()
    assert read(written) == moment
    assert read(written.replace("T", " ")) == moment
    if moment.utcoffset() == timedelta(0):
        assert read(moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) == moment


def _refused(r: httpx.Response, field: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in r.json()["errors"]], r.text


STARTS = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5)


@pytest.fixture
def settings(database: str, kafka: KafkaBroker, topics: Topics) -> AggregatorSettings:
    return aggregator_settings(database, kafka.bootstrap, topics, consume=False)


async def test_the_aggregator_refuses_a_moment_out_of_range_by_name(
    settings: AggregatorSettings, database: str
) -> None:
    await build_world(database, starts_at=STARTS, days=30)
    async with running(create_aggregator(settings)) as c:
        c.headers.update(ADMIN)
        board: dict[str, str | int] = {"level": 3, "indicator": "cccd_collected"}
        _refused(
            await c.get("/v1/campaigns/c1/leaderboard", params={**board, "as_of": FAR_PAST_UTC}),
            "as_of",
        )
        _refused(
            await c.get("/v1/campaigns/c1/leaderboard", params={**board, "previous": FAR_PAST}),
            "previous",
        )
        _refused(
            await c.get("/v1/campaigns/c1/progress/00004", params={"as_of": FAR_FUTURE}),
            "as_of",
        )
        # a number is no moment, though pydantic reads one as Unix time
        _refused(
            await c.get("/v1/campaigns/c1/progress/00004", params={"as_of": "1712345678"}),
            "as_of",
        )
        _refused(
            await c.get("/v1/campaigns/c1/leaderboard", params={**board, "previous": "-1"}),
            "previous",
        )
        # the ends of the range are answered
        early = EARLIEST.isoformat()
        r = await c.get("/v1/campaigns/c1/leaderboard", params={**board, "previous": early})
        assert r.status_code == 200, r.text
        r = await c.get("/v1/campaigns/c1/progress/00004", params={"as_of": LATEST.isoformat()})
        assert r.status_code == 200, r.text

        campaign: dict[str, Any] = {
            "name": "c",
            "starts_at": STARTS.isoformat(),
            "deadline": FAR_FUTURE,
            "indicators": ["cccd_collected"],
            "milestones": [{"at": FAR_PAST, "fraction": 0.5}],
        }
        r = await c.put("/v1/campaigns/c9", json=campaign)
        _refused(r, "deadline")
        _refused(r, "milestones.0.at")
        assert (await c.get("/v1/campaigns/c9")).status_code == 404
        r = await c.put(
            "/v1/campaigns/c1/targets",
            json=[
                {"unit": "00004", "indicator": "cccd_collected", "target": 5, "deadline": FAR_PAST}
            ],
        )
        _refused(r, "0.deadline")
        r = await c.put("/v1/admin/tree-versions/0001-01-01", json={"units": [], "crosswalk": []})
        _refused(r, "valid_from")


async def test_the_notifier_refuses_a_moment_out_of_range_by_name(harness: Harness) -> None:
    h = harness
    r = await h.api.post(
        "/v1/silences", headers=ADMIN, json={"campaign": "c1", "ends_at": FAR_FUTURE}
    )
    _refused(r, "ends_at")
    r = await h.api.post(
        "/v1/silences",
        headers=ADMIN,
        json={"campaign": "c1", "starts_at": FAR_PAST, "ends_at": h.clock.now().isoformat()},
    )
    _refused(r, "starts_at")
    r = await h.api.get("/v1/campaigns/c1/briefing", headers=ADMIN, params={"at": FAR_PAST_UTC})
    _refused(r, "at")
    # a moment without its offset, named as every other refusal
    r = await h.api.get(
        "/v1/campaigns/c1/briefing", headers=ADMIN, params={"at": "2023-05-20T10:00:00"}
    )
    _refused(r, "at")
