"""A stream of increments spread over past days, as the crash tests send it: five units of
the test tree, one indicator, values that move both ways, and what it owes each unit."""

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from services.check.run import check_round
from services.notifier.settings import NotifierSettings
from tests.support.load import Key, rolled_up

UNITS = ("00004", "00007", "00010", "001", "002")
INDICATOR = "cccd_collected"

Event = dict[str, str | int]


def spread_stream(rng: random.Random, n: int, start: datetime) -> list[Event]:
    """`n` increments (`ev-<i>`) at random moments of the 19 days after `start`."""
    return [
        {
            "event_id": f"ev-{i}",
            "unit": rng.choice(UNITS),
            "indicator": INDICATOR,
            "value": rng.choice([1, 1, 2, 3, -1]),
            "occurred_at": (start + timedelta(seconds=rng.randrange(19 * 86400))).isoformat(),
        }
        for i in range(n)
    ]


def owed(events: list[Event]) -> dict[str, int]:
    """Every unit's value once each event counts exactly once."""
    own: Counter[Key] = Counter()
    for e in events:
        own[str(e["unit"]), INDICATOR] += int(e["value"])
    return {code: value for (code, _), value in rolled_up(own, (INDICATOR,)).items()}


async def post_with_retries(
    ingest: httpx.AsyncClient, token: str, chunk: list[Event], rng: random.Random
) -> None:
    """`chunk`, then 5 % of it again, as a client retrying after a timeout: each 202."""
    for batch in (chunk, rng.sample(chunk, len(chunk) // 20)):
        r = await ingest.post(
            "/v1/events", json={"events": batch}, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 202, r.text


async def assert_counted_once(conn: asyncpg.Connection, database: str, events: list[Event]) -> None:
    """Every counter, the city's day rollups and `tiendo check` agree that each of `events`
    counted exactly once."""
    rows = await conn.fetch(
        "SELECT unit, value FROM progress WHERE campaign_id = 'c1' AND indicator = $1",
        INDICATOR,
    )
    assert {r["unit"]: r["value"] for r in rows} == owed(events)
    # the city's day rollups hold every unit's increments, and every event once
    daily = await conn.fetchrow(
        "SELECT sum(increments) AS increments, sum(events) AS events FROM subtree_days"
        " WHERE campaign_id = 'c1' AND unit = '01'"
    )
    assert daily is not None
    assert daily["increments"] == sum(int(e["value"]) for e in events)
    assert daily["events"] == len(events)
    # `tiendo check`: every live counter equals its history
    found = await check_round(
        conn, NotifierSettings(database_url=database), datetime.now(UTC), alerts=False
    )
    assert [str(d) for d in found.disagreements] == []
