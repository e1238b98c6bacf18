"""The metric snapshot keeps each unit's value one run-rate window ago between passes
(`tiendo.board.window`). A report dated before the window's start (a backfill, a device
back after a week offline) moves that value, and so does a re-plan: the next pass, minutes
inside the reuse, reads it again, so the boards' run rate, projection and status are the
board's of that moment, live and `as_of` alike. A report dated inside the window leaves the
kept values as they are (its pair is not read again). The late reports are applied apart
from the snapshot, as another replica's apply would: only PostgreSQL tells the cache."""

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.aggregator import admin
from services.aggregator.admin import TargetIn
from services.aggregator.snapshot import unit_figures
from tests.support.world import build_world
from tiendo.board import repository as board
from tiendo.board.figures import Verdict, judge_campaign
from tiendo.board.repository import Counter
from tiendo.board.window import WindowValues
from tiendo.counting import Key, apply_events
from tiendo.event import Event, Kind

START = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
# day 10, 12:00 local: the run-rate window (7 days) starts mid-day, inside a day rollup
NOW = START + timedelta(days=10, hours=2)
# the next pass, well inside the 5 minutes the values are kept
NEXT = NOW + timedelta(minutes=1)
C, E = "cccd_collected", "eid_activated_l2"
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
# what depends on the value one window ago
WINDOWED = ("run_rate_7d", "projected_completion", "status")


def _history() -> list[Event]:
    def e(n: int, unit: str, indicator: str, kind: Kind, value: int, ago: timedelta) -> Event:
        return Event(f"h-{n}", unit, indicator, kind, value, NOW - ago)

    return [
        e(1, "00004", C, Kind.INCREMENT, 3000, 7 * DAY + 2 * HOUR),
        e(2, "00004", C, Kind.INCREMENT, 500, HOUR),
        e(3, "00007", C, Kind.SNAPSHOT, 150, 3 * DAY),
        e(4, "00007", C, Kind.INCREMENT, 60, HOUR),
        e(5, "00010", C, Kind.INCREMENT, 20, 9 * DAY),
        # a busy day where the window starts: a minute's move of the start shows
        e(6, "00007", E, Kind.INCREMENT, 30000, 7 * DAY + 2 * HOUR),
        e(7, "00007", E, Kind.INCREMENT, 900, 2 * DAY),
        e(8, "00010", E, Kind.SNAPSHOT, 200, HOUR),
    ]


def _late() -> list[Event]:
    """One batch: reports from before the window for two wards of one indicator, and an
    on-time one of the other indicator."""
    return [
        # a device back after nine days offline
        Event("late-1", "00004", C, Kind.INCREMENT, 7000, NOW - 9 * DAY),
        # a snapshot dated before the window, under the one already counted
        Event("late-2", "00007", C, Kind.SNAPSHOT, 100, NOW - 8 * DAY),
        Event("on-time", "00010", E, Kind.INCREMENT, 40, NOW - 10 * timedelta(minutes=1)),
    ]


async def _world(database: str) -> asyncpg.Connection:
    await build_world(
        database,
        starts_at=START,
        indicators=(C, E),
        targets={"00004": 200_000, "00007": 200_000, "00010": 1000},
    )
    conn = await asyncpg.connect(database)
    await apply_events(conn, _history())
    return conn


async def _stored(conn: asyncpg.Connection) -> dict[Key, asyncpg.Record]:
    rows = await conn.fetch("SELECT * FROM board_figures WHERE campaign_id = 'c1'")
    return {Key(r["campaign_id"], r["unit"], r["indicator"]): r for r in rows}


def _windowed(v: Verdict) -> tuple[object, ...]:
    p = v.progress
    return (p.run_rate_7d, p.projected_completion, p.status.value)


async def _boards(conn: asyncpg.Connection, at: datetime) -> tuple[dict[Key, Verdict], ...]:
    """The board judged at `at` afresh, live and `as_of` (nothing kept)."""
    campaign = (await board.campaigns(conn))["c1"]
    live = await judge_campaign(conn, campaign, at, live=True)
    history = await judge_campaign(conn, campaign, at, live=False)
    return {v.key: v for v in live}, {v.key: v for v in history}


async def test_a_report_from_before_the_window_is_in_the_next_snapshot_pass(
    database: str,
) -> None:
    conn = await _world(database)
    try:
        cache = WindowValues(timedelta(minutes=5))
        await unit_figures(conn, 2, NOW, cache)
        kept = await _stored(conn)

        await apply_events(conn, _late())
        snapshot = await unit_figures(conn, 2, NEXT, cache)
        stored = await _stored(conn)
        live, history = await _boards(conn, NEXT)
        moved = {k for k in stored if k.indicator == C}
        assert {k.unit for k in moved} == {"01", "001", "002", "00004", "00007", "00010"}
        for key in moved:
            assert live[key].progress == history[key].progress, key
            row = stored[key]
            assert tuple(row[f] for f in WINDOWED) == _windowed(live[key]), key
        # the metrics, down to the districts (level 2), are the same pass's
        exported = {Key(f.campaign, f.unit, f.indicator): f for f in snapshot.units}
        assert {k.unit for k in moved & exported.keys()} == {"01", "001", "002"}
        for key in moved & exported.keys():
            assert exported[key].projected_completion == live[key].progress.projected_completion
            assert exported[key].status == live[key].progress.status
        # the report before the window raised the value and its start alike, not the rate
        # (over the kept start it read 1,000 a day more)
        ward = Key("c1", "00004", C)
        assert stored[ward]["value"] == kept[ward]["value"] + 7000
        assert abs(stored[ward]["run_rate_7d"] - kept[ward]["run_rate_7d"]) < 10

        # the on-time report left the other indicator's kept values in use: the start a
        # minute earlier shows in the busy ward's rate, and only there
        busy = Key("c1", "00007", E)
        assert stored[busy]["run_rate_7d"] != live[busy].progress.run_rate_7d
        reused = await _boards(conn, NOW)
        assert stored[busy]["value"] == kept[busy]["value"]
        assert stored[busy]["run_rate_7d"] == reused[0][busy].progress.run_rate_7d
        # 00010 moved by the on-time report alone: its new value over the kept start
        quiet = Key("c1", "00010", E)
        assert stored[quiet]["value"] == kept[quiet]["value"] + 40
    finally:
        await conn.close()


async def test_a_replan_is_in_the_next_snapshot_pass(database: str) -> None:
    """A baseline set after the fact moves every value of the ward's history, the one a
    window ago with it: the re-plan's transaction counts for every day."""
    conn = await _world(database)
    try:
        cache = WindowValues(timedelta(minutes=5))
        await unit_figures(conn, 2, NOW, cache)
        kept = await _stored(conn)
        async with conn.transaction():
            await admin.upsert_targets(
                conn,
                "c1",
                [TargetIn(unit="00004", indicator=C, target=200_000, baseline=20_000)],
                "test",
            )
        await unit_figures(conn, 2, NEXT, cache)
        stored = await _stored(conn)
        live, history = await _boards(conn, NEXT)
        ward = Key("c1", "00004", C)
        assert stored[ward]["value"] == kept[ward]["value"] + 20_000
        for key in (k for k in stored if k.indicator == C):
            assert live[key].progress == history[key].progress, key
            assert tuple(stored[key][f] for f in WINDOWED) == _windowed(live[key]), key
    finally:
        await conn.close()


async def test_a_report_committed_while_a_pass_reads_is_in_the_next_pass_whole(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report from before the window commits after the pass has read `history_reach`
    and before it reads the counters (another replica's batch, between two statements).
    The pass reads one state, the one before the report: its counters and the kept start
    values agree. The next pass, inside the reuse, has the report in its counters and
    reads the start values again."""
    conn = await _world(database)
    other = await asyncpg.connect(database)
    try:
        cache = WindowValues(timedelta(minutes=5))
        await unit_figures(conn, 2, NOW, cache)
        kept = await _stored(conn)
        read = board.targeted

        async def meanwhile(*args: Any, **kwargs: Any) -> list[Counter]:
            if not await other.fetchval("SELECT count(*) FROM events WHERE event_id = 'late-1'"):
                await apply_events(other, _late())
            return await read(*args, **kwargs)

        monkeypatch.setattr(board, "targeted", meanwhile)
        await unit_figures(conn, 2, NEXT, cache)
        monkeypatch.undo()
        stored = await _stored(conn)
        ward = Key("c1", "00004", C)
        # the state before the report, and the start values kept for it
        for key in (k for k in stored if k.indicator == C):
            assert stored[key]["value"] == kept[key]["value"], key
            assert stored[key]["run_rate_7d"] == kept[key]["run_rate_7d"], key
        assert stored[ward]["value"] == 3500

        later = NEXT + timedelta(minutes=1)
        await unit_figures(conn, 2, later, cache)
        stored = await _stored(conn)
        live, _ = await _boards(conn, later)
        assert stored[ward]["value"] == live[ward].progress.value == 10_500
        for key in (k for k in stored if k.indicator == C):
            assert tuple(stored[key][f] for f in WINDOWED) == _windowed(live[key]), key
    finally:
        await other.close()
        await conn.close()


async def test_a_report_committed_between_the_counters_and_the_rollups_is_not_kept(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An on-time report commits after the pass has read the counters and before it reads
    the day rollups (another replica's batch, between two statements). Were the start value
    worked out from the counters without it and the rollups with it, it would be short by
    the report, and kept for minutes: an on-time report does not make the cache read
    again. The pass reads one state, so what it keeps is the start value of that state."""
    conn = await _world(database)
    other = await asyncpg.connect(database)
    try:
        cache = WindowValues(timedelta(minutes=5))
        read = board.changes_from

        async def meanwhile(*args: Any, **kwargs: Any) -> dict[tuple[str, str], tuple[int, int]]:
            if not await other.fetchval("SELECT count(*) FROM events WHERE event_id = 'on-time'"):
                on_time = [e for e in _late() if e.event_id == "on-time"]
                await apply_events(other, on_time)
            return await read(*args, **kwargs)

        monkeypatch.setattr(board, "changes_from", meanwhile)
        await unit_figures(conn, 2, NOW, cache)
        monkeypatch.undo()
        # the next pass, inside the reuse: the report is in its counters, the kept start
        # values are reused (nothing before the window moved)
        await unit_figures(conn, 2, NEXT, cache)
        stored = await _stored(conn)
        live = (await _boards(conn, NEXT))[0]
        # 00010's value a window ago is 0 at NOW and at NEXT alike (its first report is
        # of the last hour), so the kept one is exact: 240 over 7 days, not 280
        quiet = Key("c1", "00010", E)
        assert stored[quiet]["value"] == live[quiet].progress.value == 240
        assert stored[quiet]["run_rate_7d"] == live[quiet].progress.run_rate_7d
    finally:
        await other.close()
        await conn.close()
