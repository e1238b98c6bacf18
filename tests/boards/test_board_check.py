"""`tiendo check` holds the boards' stored figures (`board_figures`, written by the
aggregator's snapshot pass) to the board judged at the moment they were (docs/check.md):
the real snapshot's rows agree, traffic after it is no disagreement, the run rate the
snapshot derives from a reused window start agrees only within that reuse, and each kind
of corruption is named."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg

from services.aggregator import admin
from services.aggregator.admin import TargetIn
from services.aggregator.snapshot import BOARD_FIGURES_COLUMNS, unit_figures
from services.check.compare import BoardRow, board_vs_judgement, persistent
from services.check.run import Round, check, check_round
from services.notifier.settings import NotifierSettings
from tests.support.world import build_world
from tiendo.board import repository as board
from tiendo.board.figures import judge_campaign
from tiendo.board.window import WindowValues
from tiendo.counting import Key, apply_events
from tiendo.event import Event, Kind

START = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
# day 10, 12:00 local: the run-rate window (7 days) starts mid-day, inside a day rollup
NOW = START + timedelta(days=10, hours=2)
INDICATORS = ("cccd_collected", "eid_activated_l2")
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
C, E = INDICATORS


def _events() -> list[Event]:
    def e(n: int, unit: str, indicator: str, kind: Kind, value: int, ago: timedelta) -> Event:
        return Event(f"b-{n}", unit, indicator, kind, value, NOW - ago)

    return [
        # a busy day where the window starts: the value there moves minute by minute
        e(1, "00004", C, Kind.INCREMENT, 30000, 7 * DAY + 2 * HOUR),
        e(2, "00004", C, Kind.INCREMENT, 500, HOUR),
        e(3, "00007", C, Kind.SNAPSHOT, 150, 3 * DAY),
        e(4, "00007", C, Kind.INCREMENT, 60, HOUR),
        e(5, "00010", C, Kind.INCREMENT, 20, 9 * DAY),  # silent since
        e(6, "00007", E, Kind.INCREMENT, 1000, 2 * DAY),  # done
        e(7, "00010", E, Kind.SNAPSHOT, 200, HOUR),
        e(8, "00004", E, Kind.INCREMENT, 90, 5 * HOUR),
    ]


async def _world(database: str) -> asyncpg.Connection:
    await build_world(
        database,
        starts_at=START,
        indicators=INDICATORS,
        targets={"00004": 100000, "00007": 1000, "00010": 1000},
    )
    conn = await asyncpg.connect(database)
    await apply_events(conn, _events())
    return conn


def _settings(database: str) -> NotifierSettings:
    return NotifierSettings(database_url=database, bottom_rank_n=0, digest_times="")


async def _check(conn: asyncpg.Connection, database: str, at: datetime, **kw: timedelta) -> Round:
    # alerts=False: no notifier runs here; the stored figures are what is compared
    return await check_round(conn, _settings(database), at, alerts=False, boards=True, **kw)


def _named(found: Round) -> set[tuple[str, str, str, str]]:
    return {(d.kind, d.unit, d.indicator, d.detail.split(":")[0]) for d in found.disagreements}


async def test_stored_figures_agree_and_each_corruption_is_named(database: str) -> None:
    conn = await _world(database)
    try:
        # ward 00010 has no cccd target (nor has its district, 002): judged nowhere
        async with conn.transaction():
            await admin.upsert_targets(
                conn, "c1", [TargetIn(unit="00010", indicator=C, target=0)], "test"
            )
        await unit_figures(conn, 2, NOW)
        found = await _check(conn, database, NOW + timedelta(minutes=1))
        assert [str(d) for d in found.disagreements] == []
        # cccd: 01, 001, 00004, 00007; eid: every unit
        assert (found.board_rows, found.board_judged_at) == (10, NOW)

        # traffic after the snapshot's moment moves the counters, not the stored figures,
        # and is no disagreement: they are judged at the moment they were taken
        await apply_events(
            conn,
            [
                Event("after-1", "00007", C, Kind.INCREMENT, 400, NOW + timedelta(seconds=30)),
                Event("after-2", "00010", E, Kind.SNAPSHOT, 999, NOW + timedelta(seconds=40)),
            ],
        )
        assert (await _check(conn, database, NOW + timedelta(minutes=2))).disagreements == []

        stored = {
            (r["unit"], r["indicator"]): r
            for r in await conn.fetch("SELECT * FROM board_figures WHERE campaign_id = 'c1'")
        }
        assert stored["00007", C]["status"] not in ("done", "stale")
        assert stored["00010", E]["parent_code"] == "002"
        # a wrong status (the board would show a ward stale that is not) ...
        await conn.execute(
            "UPDATE board_figures SET status = 'stale' WHERE unit = '00007' AND indicator = $1", C
        )
        # ... a wrong value ...
        await conn.execute(
            "UPDATE board_figures SET value = value + 1 WHERE unit = '00004' AND indicator = $1",
            E,
        )
        # ... a judged key missing (its district's children count with it) ...
        await conn.execute("DELETE FROM board_figures WHERE unit = '00010' AND indicator = $1", E)
        # ... and a key the campaign does not judge (no target), stored all the same
        extra = dict(stored["00007", C]) | {"unit": "00010", "parent_code": "002", "target": 0}
        await conn.copy_records_to_table(
            "board_figures",
            records=[tuple(extra[c] for c in BOARD_FIGURES_COLUMNS)],
            columns=BOARD_FIGURES_COLUMNS,
        )
        found = await _check(conn, database, NOW + timedelta(minutes=3))
        assert _named(found) == {
            ("board_figures", "00007", C, "status"),
            ("board_figures", "00004", E, "value"),
            ("board_missing", "00010", E, "judged (target 1000), not in board_figures"),
            ("board_children", "002", E, "children done/total"),
            (
                "board_unjudged",
                "00010",
                C,
                "in board_figures (target 0), a key the campaign does not judge",
            ),
        }
        shown = {str(d) for d in found.disagreements}
        assert (
            f"board_figures: c1/00007/{C}: status: stored 'stale', the board "
            + repr(stored["00007", C]["status"])
            in shown
        )
        value = stored["00004", E]["value"]
        assert f"board_figures: c1/00004/{E}: value: stored {value + 1}, the board {value}" in (
            shown
        )
        assert f"board_children: c1/002/{E}: children done/total: stored 0/0, the board 0/1" in (
            shown
        )
    finally:
        await conn.close()


async def test_a_campaign_left_out_whole_is_one_disagreement(database: str) -> None:
    conn = await _world(database)
    try:
        # no snapshot pass yet (or the campaign flagged, failing): nothing stored of it
        found = await _check(conn, database, NOW)
        assert [(d.kind, d.campaign, d.unit) for d in found.disagreements] == [
            ("board_missing", "c1", "*")
        ]
        assert "judges 12 keys, none in board_figures" in found.disagreements[0].detail
    finally:
        await conn.close()


async def test_the_reused_window_start_is_allowed_exactly_and_nothing_else(
    database: str,
) -> None:
    conn = await _world(database)
    try:
        cache = WindowValues(timedelta(minutes=5))
        first = NOW
        await unit_figures(conn, 2, first, cache)
        await apply_events(
            conn, [Event("later", "00004", C, Kind.INCREMENT, 7, NOW + timedelta(minutes=1))]
        )
        # four minutes on, the pass reuses the first one's window start values
        at = NOW + timedelta(minutes=4)
        await unit_figures(conn, 2, at, cache)
        campaign = (await board.campaigns(conn))["c1"]
        fresh = {v.key: v.progress for v in await judge_campaign(conn, campaign, at, live=True)}
        key = Key("c1", "00004", C)
        row = await conn.fetchrow(
            "SELECT * FROM board_figures WHERE unit = '00004' AND indicator = $1", C
        )
        assert row is not None
        # the window start moved by 4 minutes of a 30,000 day: the reuse shows
        assert row["run_rate_7d"] != fresh[key].run_rate_7d
        assert row["projected_completion"] != fresh[key].projected_completion

        found = await _check(conn, database, at + timedelta(minutes=1))
        assert [str(d) for d in found.disagreements] == []

        # without reuse allowed, that same run rate disagrees: the allowance is the reuse
        strict = await _check(conn, database, at, window_max_age=timedelta(0))
        windowed = {
            ("board_figures", u, C, f)
            for u in ("01", "001", "00004")
            for f in (
                "run_rate_7d",
                "projected_completion",
            )
        }
        assert _named(strict) == windowed
        assert all("the unit had" in d.detail for d in strict.disagreements)

        # and within the reuse, a run rate off by a hair from the start value it implies
        await conn.execute(
            "UPDATE board_figures SET run_rate_7d = run_rate_7d * (1 + 1e-12)"
            " WHERE unit = '00004' AND indicator = $1",
            C,
        )
        found = await _check(conn, database, at)
        assert _named(found) == {("board_figures", "00004", C, "run_rate_7d")}
    finally:
        await conn.close()


async def test_the_second_round_waits_for_a_newer_snapshot_and_says_when_none_came(
    database: str,
) -> None:
    conn = await _world(database)
    try:
        await unit_figures(conn, 2, NOW)
        await conn.execute(
            "UPDATE board_figures SET value = 0 WHERE unit = '00007' AND indicator = $1", E
        )
        found = await check(
            database,
            _settings(database),
            0.1,
            NOW,
            boards=True,
            board_wait=timedelta(seconds=1),
        )
        # `check` reads the alerts too: only the boards' kinds are of interest here
        assert sorted(
            (d.kind, d.unit, d.detail.split(":")[0])
            for d in found.disagreements
            if d.kind.startswith("board_")
        ) == [
            ("board_figures", "00007", "value"),
            ("board_stale", "*", "board_figures judged at 2023-05-20T05"),
        ]
    finally:
        await conn.close()


def test_a_stored_figure_a_later_snapshot_changed_is_not_reported() -> None:
    """Both rounds see a figure disagree: reported if the stored figure stayed put (a
    fault of the snapshot), not if a newer snapshot stored another (racing events)."""
    key = Key("c1", "00004", C)
    row = BoardRow(
        level=3,
        unit_name="Phường Phúc Xá",
        parent_code="001",
        value=500,
        baseline=0,
        target=1000,
        expected=200.0,
        pct=50.0,
        pace=2.5,
        run_rate_7d=None,
        required_daily_rate=12.5,
        projected_completion=None,
        status="at_risk",
        last_event_at=NOW,
        deadline=START + 50 * DAY,
        rank=1,
    )

    def stored(value: int) -> dict[Key, BoardRow]:
        return {key: replace(row, value=value)}

    judged = {key: row}
    first = board_vs_judgement(stored(497), judged)
    assert persistent(first, board_vs_judgement(stored(499), judged)) == []
    assert [str(d) for d in persistent(first, board_vs_judgement(stored(497), judged))] == [
        f"board_figures: c1/00004/{C}: value: stored 497, the board 500"
    ]
