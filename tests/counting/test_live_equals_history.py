"""Live equals history (contract §5): a campaign created, re-windowed, re-targeted or given new
indicators after its events arrived shows live exactly what `as_of` now shows, for every
unit of the tree — and both equal the from-scratch rules of the reference model
(`tests/counting/model.py`)."""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator import admin
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from tests.counting.model import Window, own_values
from tests.support.identities import ADMIN as AUTH
from tests.support.progress import assert_live_equals_history
from tests.support.stack import Topics, aggregator_settings, eventually, running
from tests.support.world import TREE
from tiendo.event import Event, Kind, encode
from tiendo.kafka import reliable_producer
from tiendo.rollup import subtree_sums

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=10)
CCCD, EID = "cccd_collected", "eid_activated_l1"
PARENTS = {u.code: u.parent_code for u in TREE}
CITIZEN_A, CITIZEN_B = "a" * 64, "b" * 64
SECOND = timedelta(seconds=1)
# the deadline of step 3: events exactly at it count, a second later do not
MOVED_DEADLINE = START + timedelta(days=6)


def _e(
    event_id: str,
    unit: str,
    at: datetime,
    value: int = 1,
    *,
    kind: Kind = Kind.INCREMENT,
    indicator: str = CCCD,
    subject: str | None = None,
) -> Event:
    return Event(event_id, unit, indicator, kind, value, at, subject, received_at=NOW)


def history() -> list[Event]:
    """Data a wrong rule would show: snapshots with increments before and after them, a
    late older snapshot, events a second outside each window edge, a citizen repeated
    across units (the repeat being its unit's latest event), an earlier event of a
    citizen arriving after the later one, a district's own events."""
    day = timedelta(days=1)
    return [
        # 00004: one before the start (outside), one exactly at it (inside)
        _e("w4-before", "00004", START - SECOND, 7),
        _e("w4-at-start", "00004", START, 2),
        _e("w4-early", "00004", START + day, 5),
        _e("w4-snap", "00004", START + 2 * day, 100, kind=Kind.SNAPSHOT),
        _e("w4-covered", "00004", START + 2 * day - SECOND, 40),  # inside the snapshot
        _e("w4-after-snap", "00004", START + 3 * day, 3),
        _e("w4-old-snap", "00004", START + day + SECOND, 60, kind=Kind.SNAPSHOT),  # late, older
        _e("w4-at-moved", "00004", MOVED_DEADLINE, 4),  # counts until the deadline moves
        _e("w4-past-moved", "00004", MOVED_DEADLINE + SECOND, 8),  # then stops counting
        _e("w4-snap-past", "00004", MOVED_DEADLINE + SECOND, 500, kind=Kind.SNAPSHOT),
        # 00007: a baseline of its own (no snapshot), a citizen counted here first
        _e("w7-a", "00007", START + day, 10),
        _e("w7-citizen-a", "00007", START + 3 * day, subject=CITIZEN_A),
        _e("w7-correction", "00007", START + 4 * day, -2),
        # 00010: the same citizen later (a duplicate, and this ward's latest event)
        _e("w10-a", "00010", START + 2 * day, 6),
        _e("w10-citizen-a", "00010", START + 5 * day, subject=CITIZEN_A),
        # citizen B: the later event first, then the earlier one at another ward
        _e("w10-citizen-b-late", "00010", START + 4 * day, subject=CITIZEN_B),
        _e("w7-citizen-b-early", "00007", START + 2 * day, subject=CITIZEN_B),
        # a district's own events, one a second before the start
        _e("d1-own", "001", START + 5 * day, 11),
        _e("d1-before", "001", START - SECOND, 9),
        # the indicator the campaign adds last
        _e("eid-4", "00004", START + day, 20, indicator=EID),
        _e("eid-10-snap", "00010", START + 3 * day, 33, kind=Kind.SNAPSHOT, indicator=EID),
        _e("eid-10-after", "00010", START + 4 * day, 2, indicator=EID),
        _e("eid-2-outside", "002", START - day, 5, indicator=EID),
    ]


def expected_values(
    events: Sequence[Event],
    starts_at: datetime,
    deadline: datetime,
    indicators: Sequence[str],
    baselines: dict[tuple[str, str], int],
) -> dict[tuple[str, str], int]:
    """(unit, indicator) → rolled-up value now, by the reference rules."""
    own = own_values(events, Window(starts_at, deadline), baselines, NOW)
    out: dict[tuple[str, str], int] = {}
    for indicator in indicators:
        sums = subtree_sums(PARENTS, {u: v for (u, i), v in own.items() if i == indicator})
        out.update({(u, indicator): v for u, v in sums.items()})
    return out


def campaign_body(deadline: datetime, indicators: list[str], **more: Any) -> dict[str, Any]:
    """The JSON of `PUT /v1/campaigns/{id}` over [START, deadline]."""
    return {
        "name": "đợt cao điểm",
        "starts_at": START.isoformat(),
        "deadline": deadline.isoformat(),
        "indicators": indicators,
        **more,
    }


@pytest.fixture
def settings(database: str, kafka: KafkaBroker, topics: Topics) -> AggregatorSettings:
    return aggregator_settings(database, kafka.bootstrap, topics)


async def test_a_campaign_made_after_its_events_shows_live_what_history_shows(
    settings: AggregatorSettings, database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    events = history()
    conn = await asyncpg.connect(database)
    producer = reliable_producer(kafka.bootstrap, client_id="test")
    await producer.start()
    try:
        async with conn.transaction():
            await admin.upsert_units(conn, TREE, "test")
        async with running(create_aggregator(settings)) as client:
            client.headers.update(AUTH)
            # one at a time, in list order: citizen B's later event is applied first
            for e in events:
                await producer.send_and_wait(topics.events, encode(e), key=e.unit.encode())

            async def stored() -> None:
                assert await conn.fetchval("SELECT count(*) FROM events") == len(events)

            await eventually(stored)

            # 1. the campaign is created after its events
            deadline = START + timedelta(days=30)
            r = await client.put(
                "/v1/campaigns/c2", headers=AUTH, json=campaign_body(deadline, [CCCD])
            )
            assert r.status_code == 200, r.text
            expected = expected_values(events, START, deadline, [CCCD], {})
            assert expected["01", CCCD] > 0
            await assert_live_equals_history(client, "c2", PARENTS, expected)

            # 2. targets with baselines (one unit's baseline is covered by its snapshot)
            targets = [
                {"unit": "00004", "indicator": CCCD, "target": 300, "baseline": 999},
                {"unit": "00007", "indicator": CCCD, "target": 200, "baseline": 30},
                {
                    "unit": "00010",
                    "indicator": CCCD,
                    "target": 100,
                    "deadline": (START + timedelta(days=5)).isoformat(),
                },
            ]
            r = await client.put("/v1/campaigns/c2/targets", headers=AUTH, json=targets)
            assert r.status_code == 200, r.text
            baselines = {("00004", CCCD): 999, ("00007", CCCD): 30}
            expected = expected_values(events, START, deadline, [CCCD], baselines)
            await assert_live_equals_history(client, "c2", PARENTS, expected)

            # 3. the deadline moves into the past: events after it stop counting
            r = await client.put(
                "/v1/campaigns/c2", headers=AUTH, json=campaign_body(MOVED_DEADLINE, [CCCD])
            )
            assert r.status_code == 200, r.text
            expected = expected_values(events, START, MOVED_DEADLINE, [CCCD], baselines)
            assert expected["00004", CCCD] == 100 + 3 + 4
            await assert_live_equals_history(client, "c2", PARENTS, expected)

            # 4. an indicator is added: its stored events count at once
            r = await client.put(
                "/v1/campaigns/c2", headers=AUTH, json=campaign_body(MOVED_DEADLINE, [CCCD, EID])
            )
            assert r.status_code == 200, r.text
            expected = expected_values(events, START, MOVED_DEADLINE, [CCCD, EID], baselines)
            assert expected["01", EID] == 20 + 33 + 2
            await assert_live_equals_history(client, "c2", PARENTS, expected)

            # the day rollups' increments (charts) were recounted with the campaign: the
            # city's days hold every unit's
            daily = await conn.fetch(
                "SELECT indicator, sum(increments) AS n FROM subtree_days"
                " WHERE campaign_id = 'c2' AND unit = '01' GROUP BY 1 ORDER BY 1"
            )
            assert [(d["indicator"], d["n"]) for d in daily] == [
                (CCCD, 2 + 5 + 40 + 3 + 4 + 10 + 1 - 2 + 6 + 1 + 11),
                (EID, 20 + 2),
            ]

            # 5. an event arriving now is applied live on top of the recount
            late = _e("w7-late", "00007", START + 5 * timedelta(days=1), 5)
            await producer.send_and_wait(topics.events, encode(late), key=b"00007")
            expected = expected_values(
                [*events, late], START, MOVED_DEADLINE, [CCCD, EID], baselines
            )

            async def applied() -> None:
                await assert_live_equals_history(client, "c2", PARENTS, expected)

            await eventually(applied)
    finally:
        await producer.stop()
        await conn.close()
