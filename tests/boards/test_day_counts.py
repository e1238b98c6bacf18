"""The days' counted events, read from the day rollups (aggregator migration 015): the
metrics' events of today per unit's subtree, equal to a count of the events by the rules (a
citizen counted once, at the earliest of its events, even when that one arrives last),
computed here from the events themselves. And a briefing's history version, which moves
with every batch that reaches the briefing's hour or an earlier one, and only then."""

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from services.aggregator.snapshot import unit_figures
from services.notifier.repository.briefings import history_version
from tests.support.world import TREE, build_world
from tiendo.counting import apply_events
from tiendo.event import Event, Kind

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.astimezone(ZONE).date()
# the campaign's local midnight of today, and moments of today and the days before it
MIDNIGHT = datetime.combine(TODAY, datetime.min.time(), ZONE)
START = MIDNIGHT - timedelta(days=5)
INDICATORS = ("cccd_collected", "eid_activated_l2")
PARENT = {u.code: u.parent_code for u in TREE}
CITIZEN = "d" * 64


def _today(permille: int) -> datetime:
    """A moment of today before now: `permille` of the way into the part that has passed."""
    return MIDNIGHT + (NOW - MIDNIGHT) * permille / 1000


def _end(day: date) -> datetime:
    """A briefing at the last moment of local `day`."""
    return datetime.combine(day, time.max, ZONE)


def _first() -> list[Event]:
    cccd, eid = INDICATORS
    return [
        Event("d-1", "00004", cccd, Kind.INCREMENT, 3, _today(100)),
        Event("d-2", "00004", cccd, Kind.SNAPSHOT, 40, _today(200)),
        Event("d-3", "00007", cccd, Kind.INCREMENT, 2, _today(300)),
        Event("d-4", "001", cccd, Kind.INCREMENT, 1, _today(400)),
        Event("d-5", "00010", cccd, Kind.INCREMENT, 5, MIDNIGHT - timedelta(hours=3)),
        Event("d-6", "00010", eid, Kind.INCREMENT, 1, _today(500), CITIZEN),
        Event("d-7", "00004", eid, Kind.INCREMENT, 1, _today(600), CITIZEN),  # counted once
        Event("d-8", "00004", cccd, Kind.INCREMENT, 9, START - timedelta(hours=1)),  # before
    ]


def _second() -> list[Event]:
    # the same citizen's earlier event, last to arrive: its count leaves today
    return [
        Event("d-9", "00007", INDICATORS[1], Kind.INCREMENT, 1, MIDNIGHT - timedelta(days=2)),
        Event("d-10", "00007", INDICATORS[1], Kind.INCREMENT, 1, _today(700), "e" * 64),
        Event("d-11", "002", INDICATORS[0], Kind.SNAPSHOT, 8, _today(800)),
        Event(
            "d-12", "00007", INDICATORS[1], Kind.INCREMENT, 1, MIDNIGHT - timedelta(days=1), CITIZEN
        ),
    ]


def _counted(events: Iterable[Event]) -> list[Event]:
    """Rules 1 and 2: in the campaign's window, each citizen at its earliest event."""
    inside = [e for e in events if START <= e.occurred_at <= NOW]
    earliest: dict[tuple[str, str], Event] = {}
    for e in sorted(inside, key=lambda e: (e.occurred_at, e.event_id)):
        if e.subject is not None:
            earliest.setdefault((e.indicator, e.subject), e)
    return [e for e in inside if e.subject is None or earliest[e.indicator, e.subject] is e]


def _lineage(unit: str) -> list[str]:
    chain = [unit]
    while (parent := PARENT[chain[-1]]) is not None:
        chain.append(parent)
    return chain


def _local_day(e: Event) -> date:
    return e.occurred_at.astimezone(ZONE).date()


async def test_events_of_today_and_history_versions_count_the_counted_events(
    database: str,
) -> None:
    await build_world(database, starts_at=START, indicators=INDICATORS)
    conn = await asyncpg.connect(database)
    try:
        await apply_events(conn, _first())
        days = [TODAY - timedelta(days=n) for n in range(4)]
        versions = {day: await history_version(conn, "c1", _end(day)) for day in days}
        await apply_events(conn, _second())
        counted = _counted([*_first(), *_second()])
        assert "d-7" not in {e.event_id for e in counted}  # rule 2 at work in the data
        assert "d-6" not in {e.event_id for e in counted}

        expected: dict[tuple[str, str], int] = {}
        for e in counted:
            if _local_day(e) == TODAY:
                for unit in _lineage(e.unit):
                    expected[unit, e.indicator] = expected.get((unit, e.indicator), 0) + 1
        snapshot = await unit_figures(conn, 3, NOW)
        found = {(f.unit, f.indicator): f.events_today for f in snapshot.units}
        assert {k: v for k, v in found.items() if v} == expected

        # the second batch reaches back two days (d-9): the versions of those days and
        # later ones move, the day before them keeps its own
        reached = min(_local_day(e) for e in _second())
        assert reached == TODAY - timedelta(days=2)
        for day in days:
            moved = await history_version(conn, "c1", _end(day)) != versions[day]
            assert moved is (reached <= day), day
        # a batch of today alone moves today's version only
        versions = {day: await history_version(conn, "c1", _end(day)) for day in days}
        await apply_events(conn, [Event("d-13", "00010", INDICATORS[0], Kind.INCREMENT, 2, NOW)])
        for day in days:
            moved = await history_version(conn, "c1", _end(day)) != versions[day]
            assert moved is (day == TODAY), day

        # to the hour: a report of yesterday at 15:30 moves the version of a briefing of
        # yesterday afternoon, not that of the morning's; one at 09:30, in the morning
        # briefing's hour (9:00) though after it, moves that one too (hours, not moments)
        yesterday = MIDNIGHT - timedelta(days=1)
        morning, afternoon = yesterday + timedelta(hours=9), yesterday + timedelta(hours=16)
        for event_id, hours, moves_morning in (("d-14", 15.5, False), ("d-15", 9.5, True)):
            before = {m: await history_version(conn, "c1", m) for m in (morning, afternoon)}
            at = yesterday + timedelta(hours=hours)
            report = Event(event_id, "00010", INDICATORS[0], Kind.INCREMENT, 1, at)
            await apply_events(conn, [report])
            assert await history_version(conn, "c1", afternoon) != before[afternoon]
            moved = await history_version(conn, "c1", morning) != before[morning]
            assert moved is moves_morning, event_id
        # an aggregator not yet upgraded to the hours counts its batch on the day's row
        # alone (its upsert's update): a write no hour holds, as of the day's start
        before = {m: await history_version(conn, "c1", m) for m in (morning, afternoon)}
        await conn.execute(
            "UPDATE history_reach SET writes = writes + 1"
            " WHERE campaign_id = 'c1' AND indicator = $1 AND day = $2",
            INDICATORS[0],
            yesterday.date(),
        )
        for m in (morning, afternoon):
            assert await history_version(conn, "c1", m) != before[m], m
    finally:
        await conn.close()
