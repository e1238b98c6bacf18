"""The boards' stored figures are the board's own (tiendo/board): every key with a target,
at every level, exactly as `judge_campaign` judges it and ranked as the leaderboard API
ranks it; each snapshot replaces them whole, so an admin change reaches the boards with
the next one; the metrics export the same verdicts down to their level."""

from datetime import UTC, datetime, timedelta

import asyncpg

from services.aggregator import admin
from services.aggregator.admin import TargetIn
from services.aggregator.progress import leaderboard
from services.aggregator.snapshot import unit_figures
from tests.support.world import build_world
from tiendo.board import repository as board
from tiendo.board.figures import judge_campaign
from tiendo.counting import apply_events
from tiendo.event import Event, Kind

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=10)
INDICATORS = ("cccd_collected", "eid_activated_l2")


def _events() -> list[Event]:
    def e(n: int, unit: str, indicator: str, kind: Kind, value: int, ago: timedelta) -> Event:
        return Event(f"f-{n}", unit, indicator, kind, value, NOW - ago)

    hour, day = timedelta(hours=1), timedelta(days=1)
    return [
        e(1, "00004", "cccd_collected", Kind.INCREMENT, 1000, 2 * day),  # done
        e(2, "00007", "cccd_collected", Kind.SNAPSHOT, 150, 3 * day),  # on its way
        e(3, "00007", "cccd_collected", Kind.INCREMENT, 60, hour),
        e(4, "00010", "cccd_collected", Kind.INCREMENT, 20, 9 * day),  # silent since: stale
        e(5, "00004", "eid_activated_l2", Kind.INCREMENT, 190, hour),
        e(6, "00007", "eid_activated_l2", Kind.INCREMENT, 200, hour),  # a tie on pct with …
        e(7, "00010", "eid_activated_l2", Kind.SNAPSHOT, 200, hour),  # … 00010: code decides
    ]


async def _stored(conn: asyncpg.Connection) -> dict[tuple[str, str], asyncpg.Record]:
    rows = await conn.fetch("SELECT * FROM board_figures WHERE campaign_id = 'c1'")
    return {(r["unit"], r["indicator"]): r for r in rows}


async def test_stored_figures_are_the_boards_verdicts_ranked_as_the_leaderboard(
    database: str,
) -> None:
    await build_world(database, starts_at=START, indicators=INDICATORS)
    conn = await asyncpg.connect(database)
    try:
        await apply_events(conn, _events())
        snapshot = await unit_figures(conn, 2, NOW)
        stored = await _stored(conn)
        campaign = (await board.campaigns(conn))["c1"]
        verdicts = await judge_campaign(conn, campaign, NOW, live=True)
        # every judged key of every level, wards included, and nothing else
        assert set(stored) == {(v.unit, v.indicator) for v in verdicts}
        assert {u for u, _ in stored} == {"01", "001", "002", "00004", "00007", "00010"}
        for v in verdicts:
            row, p = stored[v.unit, v.indicator], v.progress
            assert (row["value"], row["target"], row["status"]) == (p.value, p.target, p.status)
            assert (row["pct"], row["pace"], row["expected"]) == (p.pct, p.pace, p.expected)
            assert row["projected_completion"] == p.projected_completion
            assert row["run_rate_7d"] == p.run_rate_7d
            assert row["last_event_at"] == v.last_event_at
            assert (row["level"], row["parent_code"]) == (v.level, v.parent)
        assert stored["00004", "cccd_collected"]["status"] == "done"
        assert stored["00010", "cccd_collected"]["status"] == "stale"
        for indicator in INDICATORS:
            for level in (1, 2, 3):
                ranking = await leaderboard(conn, campaign, indicator, level, NOW, live=True)
                by_rank = sorted(
                    (r for (_, i), r in stored.items() if i == indicator and r["level"] == level),
                    key=lambda r: r["rank"],
                )
                assert [r["unit"] for r in by_rank] == [row.unit.code for row in ranking]
                assert [r["rank"] for r in by_rank] == [row.rank for row in ranking]
        # the metrics export the same verdicts, down to their level only
        exported = {(f.unit, f.indicator): f for f in snapshot.units}
        assert {u for u, _ in exported} == {"01", "001", "002"}
        for key, f in exported.items():
            assert (f.status.value, f.pace) == (stored[key]["status"], stored[key]["pace"])

        # An admin change: the next snapshot replaces the figures whole.
        async with conn.transaction():
            await admin.upsert_targets(
                conn,
                "c1",
                [
                    TargetIn(unit="00007", indicator="cccd_collected", target=200),
                    TargetIn(unit="00010", indicator="eid_activated_l2", target=0),
                ],
                "test",
            )
        await unit_figures(conn, 2, NOW + timedelta(seconds=10))
        after = await _stored(conn)
        assert after["00007", "cccd_collected"]["status"] == "done"
        assert ("00010", "eid_activated_l2") not in after  # no target: on no board
        assert {r["judged_at"] for r in after.values()} == {NOW + timedelta(seconds=10)}
    finally:
        await conn.close()
