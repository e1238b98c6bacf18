"""A campaign's time zone is an IANA region/city zone, `UTC` or a fixed `Etc/*` zone that both
Python and PostgreSQL know (docs/admin.md, *Time zones*): host-dependent and non-geographic
names (`localtime`, `Factory`, `US/Eastern`) are refused by the admin API, and a stored one
is left out by the aggregator's guard and by every reader alike."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.guard import CampaignGuard, known_timezones
from services.aggregator.validation import campaign_problems
from tests.reference.test_campaign_validation import INDICATORS, campaign
from tests.support.identities import ADMIN as AUTH
from tests.support.stack import Topics, aggregator_settings, running
from tests.support.world import build_world
from tiendo.board import repository as board
from tiendo.board.campaign import ZONE_RULE, campaign_zone_name

START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5)
DEADLINE = START + timedelta(days=30)
REFUSED = [
    "localtime",
    "Factory",
    "posixrules",
    "US/Eastern",
    "Japan",
    "EST5EDT",
    "CET",
    "GMT",
    "Zulu",
    "posix/Asia/Ho_Chi_Minh",
    "right/UTC",
    "Asia/",
    "/Asia/Ho_Chi_Minh",
    "Asia/../localtime",
    "utc",
]
ACCEPTED = [
    "Asia/Ho_Chi_Minh",
    "Asia/Saigon",
    "America/Argentina/Buenos_Aires",
    "America/Port-au-Prince",
    "UTC",
    "Etc/UTC",
    "Etc/GMT-7",
    "Etc/GMT+12",
]


def zone_problems(zone: str) -> list[tuple[str, str]]:
    # every name is offered as known, as if both zone databases had it: the rule decides
    problems = campaign_problems(campaign(timezone=zone), timezones={zone}, indicators=INDICATORS)
    return [(p.field, p.message) for p in problems]


@pytest.mark.parametrize("zone", REFUSED)
def test_a_host_dependent_or_non_geographic_zone_is_refused(zone: str) -> None:
    assert zone_problems(zone) == [("timezone", f"{ZONE_RULE}, not {zone!r}")]
    assert not campaign(timezone=zone).judgeable()


@pytest.mark.parametrize("zone", ACCEPTED)
def test_region_city_utc_and_fixed_zones_are_accepted(zone: str) -> None:
    assert zone_problems(zone) == []
    assert campaign(timezone=zone).judgeable()


def test_an_unknown_zone_of_the_right_form_is_still_unknown() -> None:
    problems = campaign_problems(
        campaign(timezone="Asia/Hanoi_typo"), timezones={"UTC"}, indicators=INDICATORS
    )
    assert [(p.field, p.message) for p in problems] == [
        ("timezone", "unknown time zone 'Asia/Hanoi_typo'")
    ]


async def test_every_accepted_zone_is_read_the_same_by_python_and_postgresql(
    database: str,
) -> None:
    conn = await asyncpg.connect(database)
    try:
        zones = sorted(z for z in await known_timezones(conn) if campaign_zone_name(z))
        assert "Asia/Ho_Chi_Minh" in zones
        assert "localtime" not in zones
        moments = [datetime(2023, 1, 15, 12, tzinfo=UTC), datetime(2023, 7, 15, 12, tzinfo=UTC)]
        rows = await conn.fetch(
            "SELECT z, m, m AT TIME ZONE z AS wall FROM unnest($1::text[]) z,"
            " unnest($2::timestamptz[]) m",
            zones,
            moments,
        )
    finally:
        await conn.close()
    differ = [
        (r["z"], r["m"])
        for r in rows
        if r["m"].astimezone(ZoneInfo(r["z"])).replace(tzinfo=None) != r["wall"]
    ]
    assert differ == []


async def test_admin_refuses_localtime_and_a_stored_one_is_left_out_by_guard_and_readers(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=START, days=30)
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    body = {
        "name": "c",
        "starts_at": START.isoformat(),
        "deadline": DEADLINE.isoformat(),
        "indicators": ["cccd_collected"],
    }
    async with running(create_aggregator(settings)) as client:
        client.headers.update(AUTH)
        for zone in ("localtime", "Factory", "US/Eastern"):
            r = await client.put("/v1/campaigns/c9", json={**body, "timezone": zone})
            assert r.status_code == 422, r.text
            assert [(e["field"], e["message"]) for e in r.json()["errors"]] == [
                ("timezone", f"{ZONE_RULE}, not {zone!r}")
            ]
        r = await client.put("/v1/campaigns/c9", json={**body, "timezone": "Etc/GMT-7"})
        assert r.status_code == 200, r.text

    conn = await asyncpg.connect(database)
    try:
        # behind the admin API's back: the guard and the boards agree to leave it out
        await conn.execute(
            "INSERT INTO campaigns (id, name, starts_at, deadline, timezone, indicators)"
            " VALUES ('host', 'h', $1, $2, 'localtime', '{cccd_collected}')",
            START,
            DEADLINE,
        )
        guard = CampaignGuard()
        await guard.refresh(conn)
        assert guard.ids == ["host"]
        assert [p.field for p in guard.unusable["host"]] == ["timezone"]
        readable = await board.campaigns(conn)
        assert "host" not in readable
        assert {"c1", "c9"} <= readable.keys()
    finally:
        await conn.close()
