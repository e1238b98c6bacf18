"""The readers' `as_of` (day rollups and one day of events, `tiendo.counting.as_of_days`)
equals the history form (`rules.VALUES_AS_OF`, `counting.as_of_history`) at any moment:
local midnights, exactly at events, the start and a second before it, the deadline and
after it, moments in no day with events. Events arrive in time order (how reports arrive
live) or shuffled (late reports, older than snapshots already applied), in random
batches: snapshots and increments of wards and of a district's own,
citizens counted once, baselines. A second world crosses a cut-over: before it the reader
falls back to the history (the rollups are kept on the campaign's current tree), after it
the versions closed by it land on their successors."""

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.localstack import PostgresServer
from services.aggregator import admin, cutover
from services.aggregator.admin import CampaignIn, TargetIn
from tests.counting.test_cutover import CCCD as CUT_CCCD
from tests.counting.test_cutover import JAN, chain
from tests.counting.trees import CUT, hanoi_2025, write_tree
from tests.support.databases import clone_database
from tests.support.world import TREE, build_world
from tiendo import counting
from tiendo.counting import as_of_days
from tiendo.event import Event, Kind

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)  # 10:00 local
DEADLINE = STARTS + timedelta(days=6)
CCCD, EID = "cccd_collected", "eid_activated_l2"
UNITS = [u.code for u in TREE]
FIRST_LEVELS = [u.code for u in TREE if u.level <= 2]
DAY = timedelta(days=1)
SETTINGS = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _events(rng: random.Random, units: list[str], indicators: list[str], n: int) -> list[Event]:
    """`n` events in time order over [start - 1 day, deadline + 1 day], half on whole hours
    (ties between events, and events at the start, the deadline, local midnights and the
    hours' starts), half within an hour (several in one hour, either side of a moment)."""
    hours = int((DEADLINE - STARTS) / timedelta(hours=1)) + 48
    out = []
    for i in range(n):
        at = STARTS - DAY + timedelta(hours=rng.randrange(hours))
        if rng.random() < 0.5:
            at += timedelta(minutes=rng.choice([1, 15, 30, 59]))
        roll = rng.random()
        indicator = rng.choice(indicators)
        if roll < 0.25:
            kind, value, subject = Kind.SNAPSHOT, rng.randint(0, 60), None
        elif roll < 0.45:
            kind, value, subject = Kind.INCREMENT, 1, f"{rng.randrange(4):064x}"
            indicator = indicators[-1]
        else:
            kind, value, subject = Kind.INCREMENT, rng.choice([1, 2, 5, -1]), None
        out.append(Event(f"e{i}", rng.choice(units), indicator, kind, value, at, subject))
    return sorted(out, key=lambda e: (e.occurred_at, e.event_id))


def _moments(
    rng: random.Random, events: list[Event], start: datetime, end: datetime
) -> list[datetime]:
    midnight = datetime.combine(start.astimezone(ZONE).date(), datetime.min.time(), ZONE)
    moments = [start, start - timedelta(seconds=1), end, end + DAY, start - 2 * DAY]
    moments += [midnight + k * DAY for k in range(-1, (end - start).days + 3)]
    sampled = rng.sample(events, min(6, len(events)))
    moments += [e.occurred_at for e in sampled]
    # within the hour of an event, either side of it
    moments += [e.occurred_at + timedelta(minutes=rng.choice([-20, -1, 1, 20])) for e in sampled]
    moments += [start + timedelta(minutes=rng.randrange(int((end - start).total_seconds() // 60)))]
    return moments


async def _batches(conn: asyncpg.Connection, rng: random.Random, events: list[Event]) -> None:
    first = 0
    while first < len(events):
        size = rng.randint(1, 6)
        await counting.apply_events(conn, events[first : first + size])
        first += size


async def _read_by(
    conn: asyncpg.Connection,
    indicators: list[str],
    codes: list[str],
    start: datetime,
    at: datetime,
    side: as_of_days.Side,
    small: int,
) -> as_of_days.Reading | None:
    """`as_of_days.read` by one of its paths: `small` 0 takes the large subtree's reads
    (one index range, the rest of the day for quiet roots) and the many roots' subtrees
    (every unit's lineage joined to them), else the unit-by-unit ones and the subtrees
    found by the lineages' index."""
    return await as_of_days.read(
        conn,
        "c1",
        indicators,
        codes,
        start,
        at,
        small_subtree=small,
        side=side,
        most_probes=small,
        few_roots=small,
    )


async def _assert_alike(
    conn: asyncpg.Connection,
    codes: list[str],
    indicators: list[str],
    start: datetime,
    at: datetime,
    *,
    rollups_answer: bool | None,
) -> None:
    # (the history form takes moments up to the deadline; the reader's clamps them)
    deadline = await conn.fetchval("SELECT deadline FROM campaigns WHERE id = 'c1'")
    history = await counting.as_of_history(conn, "c1", indicators, codes, start, min(at, deadline))
    read = await counting.as_of(conn, "c1", indicators, codes, start, at)
    assert read == history, at
    days = await as_of_days.read(conn, "c1", indicators, codes, start, at)
    # Every path of the reader holds what it calls exact to the history: a large
    # subtree's (its span of the indicators' events, one index range) and the
    # unit-by-unit one these small trees take; either side of the moment's day (the day's
    # start and the events up to the moment, or the day's end less the events after it);
    # the last reports of roots quiet before the moment probed or read with the day.
    # (Which roots a side can read exactly differs: after the moment, a snapshot of a
    # shared unit needs no value of its own where one of the day before it gives one.)
    for side in ("auto", "before", "after"):
        for small in (as_of_days.SMALL_SUBTREE, 0):
            read_side = await _read_by(conn, indicators, codes, start, at, side, small)
            assert (read_side is None) == (days is None), (at, side, small)
            if read_side is None:
                continue
            exact = {
                key: counting.ValueAt(value, last)
                for key, (value, last) in read_side.figures.items()
                if key[1] not in read_side.inexact
            }
            assert exact == {k: history[k] for k in exact}, (at, side, small)
            assert set(read_side.figures) == set(history), (at, side, small)
    # the reader did read the rollups where they are kept (not only its fallback)
    if rollups_answer is not None:
        assert (days is not None) == rollups_answer, at


# how the events arrive: in time order, or each batch of a shuffled history
ARRIVALS = st.sampled_from(["in time order", "shuffled"])


def _arriving(rng: random.Random, events: list[Event], arrival: str) -> list[Event]:
    return rng.sample(events, len(events)) if arrival == "shuffled" else events


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(1, 60), arrival=ARRIVALS)
def test_as_of_from_the_rollups_equals_the_history(
    postgres: PostgresServer, template_db: str, seed: int, n: int, arrival: str
) -> None:
    async def scenario(dsn: str) -> None:
        await build_world(dsn, starts_at=STARTS, days=6, indicators=(CCCD, EID))
        rng = random.Random(seed)
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                targets = [TargetIn(unit="00007", indicator=CCCD, target=1000, baseline=25)]
                await admin.upsert_targets(conn, "c1", targets, "t")
            events = _events(rng, UNITS, [CCCD, EID], n)
            await _batches(conn, rng, _arriving(rng, events, arrival))
            start = await conn.fetchval("SELECT starts_at FROM campaigns WHERE id = 'c1'")
            end = await conn.fetchval("SELECT deadline FROM campaigns WHERE id = 'c1'")
            for at in _moments(rng, events, start, end):
                await _assert_alike(conn, UNITS, [CCCD, EID], start, at, rollups_answer=True)
                # the city and its districts alone: the first levels, read by hours
                await _assert_alike(conn, FIRST_LEVELS, [CCCD, EID], start, at, rollups_answer=True)
        finally:
            await conn.close()

    _run(postgres, template_db, scenario)


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(1, 40), arrival=ARRIVALS)
def test_as_of_across_a_cutover_equals_the_history(
    postgres: PostgresServer, template_db: str, seed: int, n: int, arrival: str
) -> None:
    versions, transfers = chain()
    start, end = JAN - 10 * DAY, CUT + 10 * DAY
    boundaries = sorted({b for v in versions for b in (v.valid_from, v.valid_to) if b})
    current = max(b for b in boundaries if b <= end)

    async def scenario(dsn: str) -> None:
        rng = random.Random(seed)
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                await write_tree(conn, versions, transfers)
                campaign = CampaignIn(
                    name="c", starts_at=start, deadline=end, indicators=[CUT_CCCD]
                )
                await admin.upsert_campaign(conn, "c1", campaign, "t")
                await admin.upsert_targets(
                    conn, "c1", [TargetIn(unit="A", indicator=CUT_CCCD, target=9, baseline=3)], "t"
                )
                await cutover.after_tree_change(conn, end + DAY)
                await cutover.replan_passed(conn, end + DAY)
            # events on the versions in force when they happened
            span = int((end - start) / timedelta(hours=6))
            events = []
            for i in range(n):
                at = start + timedelta(hours=6 * rng.randrange(span))
                live = [v.key for v in versions if _in_force(v.valid_from, v.valid_to, at)]
                kind = Kind.SNAPSHOT if rng.random() < 0.25 else Kind.INCREMENT
                value = rng.randint(0, 40) if kind is Kind.SNAPSHOT else rng.choice([1, 2, -1])
                events.append(Event(f"e{i}", rng.choice(live), CUT_CCCD, kind, value, at))
            events.sort(key=lambda e: (e.occurred_at, e.event_id))
            await _batches(conn, rng, _arriving(rng, events, arrival))
            codes = [v.key for v in versions]
            for at in _moments(rng, events, start, end):
                moment = max(start, min(at, end))
                tree = max((b for b in boundaries if b <= moment), default=None)
                on_current = tree == current
                # before the cut-over: the history; after it, the rollups unless a version
                # carried by shares (this world splits by shares) has counted events
                answer = None if on_current else False
                await _assert_alike(conn, codes, [CUT_CCCD], start, at, rollups_answer=answer)
        finally:
            await conn.close()

    _run(postgres, template_db, scenario)


def _in_force(valid_from: datetime | None, valid_to: datetime | None, at: datetime) -> bool:
    return (valid_from is None or valid_from <= at) and (valid_to is None or at < valid_to)


def _run(
    postgres: PostgresServer, template_db: str, scenario: Callable[[str], Awaitable[None]]
) -> None:
    name = f"a_{uuid.uuid4().hex[:12]}"

    async def go() -> None:
        owner = await asyncpg.connect(postgres.dsn())
        try:
            await clone_database(owner, template_db, name)
            await scenario(postgres.dsn(name))
        finally:
            await owner.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await owner.close()

    asyncio.run(go())


async def test_a_snapshot_of_a_unit_that_absorbed_others_is_exact_where_a_base_is_read(
    database: str,
) -> None:
    """After a cut-over, Ba Đình (00004@2025-07-01) receives 00004's and 00005's figures
    as well as its own: its own value at a day's start cannot be told from the rollups. A
    snapshot of it on the day read needs that value read before the moment, and after the
    moment too unless a snapshot of that day up to the moment gives it. Those roots are
    marked inexact (and `counting.as_of` reads them from the history); every other figure
    is the history's. Read by hours (the city and its communes keep them), only a snapshot
    within the moment's hour needs it."""
    versions, transfers = hanoi_2025(shares=False)
    start, end = CUT - 10 * DAY, CUT + 10 * DAY
    day = datetime.combine((CUT + 3 * DAY).astimezone(ZONE).date(), datetime.min.time(), ZONE)
    hour = timedelta(hours=1)
    ba_dinh = "00004@2025-07-01"
    events = [
        Event("a1", "00004", CUT_CCCD, Kind.INCREMENT, 4, CUT - 5 * DAY),
        Event("b1", "00005", CUT_CCCD, Kind.INCREMENT, 3, CUT - 4 * DAY),
        Event("b2", "00005", CUT_CCCD, Kind.SNAPSHOT, 20, CUT - 2 * DAY),
        Event("n1", ba_dinh, CUT_CCCD, Kind.INCREMENT, 2, CUT + DAY),
        Event("n2", ba_dinh, CUT_CCCD, Kind.INCREMENT, 5, day + 8 * hour),
        Event("n3", ba_dinh, CUT_CCCD, Kind.SNAPSHOT, 50, day + 10 * hour),
        # at the snapshot's instant: covered by it, so not among the increments after it
        Event("n3b", ba_dinh, CUT_CCCD, Kind.INCREMENT, 3, day + 10 * hour),
        Event("n4", ba_dinh, CUT_CCCD, Kind.INCREMENT, 1, day + 12 * hour),
        Event("n5", ba_dinh, CUT_CCCD, Kind.SNAPSHOT, 70, day + 16 * hour),
        Event("n6", ba_dinh, CUT_CCCD, Kind.INCREMENT, 2, day + 18 * hour),
        Event("y1", "00008@2025-07-01", CUT_CCCD, Kind.INCREMENT, 6, day + 11 * hour),
    ]
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            await write_tree(conn, versions, transfers)
            campaign = CampaignIn(name="c", starts_at=start, deadline=end, indicators=[CUT_CCCD])
            await admin.upsert_campaign(conn, "c1", campaign, "t")
            # (the campaign moved onto the tree after the cut-over, where its rollups are)
            await cutover.after_tree_change(conn, end + DAY)
            await cutover.replan_passed(conn, end + DAY)
        for x in events:
            await counting.apply_events(conn, [x])
        codes = [v.key for v in versions if v.valid_to is None]
        # (roots whose subtree holds Ba Đình)
        holding = {"01", ba_dinh}
        # A city and its communes keep their days' hours: only the moment's hour is read.
        by_hours: list[tuple[float, as_of_days.Side, set[str]]] = [
            # before the moment: the snapshot at 10:00 needs its value at the day's start
            (10.5, "before", holding),
            # the 16:00 one has that of 10:00 as its base
            (16.5, "before", set()),
            (9.5, "before", set()),
            (11, "before", set()),
            (10.5, "after", set()),
            (9.5, "after", set()),
        ]
        # Days rolled up before the hours were kept (an upgraded deployment) are read whole.
        by_days: list[tuple[float, as_of_days.Side, set[str]]] = [
            (9, "before", set()),
            (11, "before", holding),
            (17, "before", holding),
            # after it: from 09:00 the snapshots after it have no base that day; from
            # 11:00 on the 10:00 snapshot is the base of the 16:00 one
            (9, "after", holding),
            (11, "after", set()),
            (13, "after", set()),
            (17, "after", set()),
        ]
        for cases in (by_hours, by_days):
            if cases is by_days:
                await conn.execute("UPDATE subtree_days SET hours = NULL")
            for h, side, inexact in cases:
                at = day + h * hour
                history = await counting.as_of_history(conn, "c1", [CUT_CCCD], codes, start, at)
                assert await counting.as_of(conn, "c1", [CUT_CCCD], codes, start, at) == history
                for small in (as_of_days.SMALL_SUBTREE, 0):
                    read = await _read_by(conn, [CUT_CCCD], codes, start, at, side, small)
                    assert read is not None, (h, side)
                    assert read.inexact == inexact, (h, side, small)
                    exact = {
                        key: counting.ValueAt(value, last)
                        for key, (value, last) in read.figures.items()
                        if key[1] not in read.inexact
                    }
                    assert exact == {k: history[k] for k in exact}, (h, side, small)
    finally:
        await conn.close()
