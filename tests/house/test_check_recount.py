"""`tiendo check` while a rebuild replays the events topic (docs/check.md "While a rebuild
replays"): the counters hold part of the events, the boards and alerts keep the figures of
before it, and they legitimately disagree. The check says a recount is in progress, how
far it has come, compares nothing and exits 75; a rebuild's row whose offsets the group has
reached (one that died, the aggregators caught up) is no recount, and all is compared."""

import asyncio
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.aggregator.repository import positions as position_sql
from services.aggregator.snapshot import unit_figures
from services.check.cli import EXIT_RECOUNTING, exit_status, report
from services.check.run import Round, check, check_round
from services.notifier.settings import NotifierSettings
from tests.boards.test_board_check import NOW, E, _events, _world
from tiendo.counting import apply_events, recount

GROUP, TOPIC = "tiendo-aggregator", "progress-events"
STARTED = NOW + timedelta(minutes=2)
# the rebuild replays partitions 0 and 1 from offsets 10 and 0 up to 110 and 50 (150)
PARTITIONS, FROM, UNTIL = [0, 1], [10, 0], [110, 50]
# the other group's offsets are not the rebuild's: they must not count
OTHER = ("another-group", TOPIC, 0, 110)


def _settings(database: str) -> NotifierSettings:
    return NotifierSettings(database_url=database, bottom_rank_n=0, digest_times="")


async def _round(conn: asyncpg.Connection, database: str, at: datetime) -> Round:
    # alerts=False: no notifier runs here; the stored figures are what is compared
    return await check_round(conn, _settings(database), at, alerts=False, boards=True)


async def _replayed(conn: asyncpg.Connection, next_offsets: dict[int, int]) -> None:
    """The group's stored positions, as the rebuild commits them batch by batch."""
    await position_sql.set_offsets(conn, GROUP, TOPIC, next_offsets)


async def _begin_rebuild(conn: asyncpg.Connection) -> None:
    """What the rebuild's reset commits in one transaction (services/aggregator/
    rebuild.py): the history forgotten, the counters recounted from none, the group
    rewound to where the replay starts, and the row that says a recount is in progress."""
    async with conn.transaction():
        await position_sql.clear_history(conn)
        await recount(conn)
        await _replayed(conn, dict(zip(PARTITIONS, FROM, strict=True)))
        await conn.execute(
            "INSERT INTO aggregator.recounts (started_at, actor, group_id, topic, partitions,"
            " from_offsets, until_offsets) VALUES ($1, 'test', $2, $3, $4, $5, $6)",
            STARTED,
            GROUP,
            TOPIC,
            PARTITIONS,
            FROM,
            UNTIL,
        )


async def test_a_rebuild_replaying_is_said_and_nothing_is_compared(database: str) -> None:
    conn = await _world(database)
    try:
        await unit_figures(conn, 2, NOW)
        assert (await _round(conn, database, NOW + timedelta(minutes=1))).disagreements == []
        await conn.execute(
            "INSERT INTO aggregator.consumer_offsets (group_id, topic, partition, next_offset)"
            " VALUES ($1, $2, $3, $4)",
            *OTHER,
        )

        await _begin_rebuild(conn)
        # part of the events replayed: 40 of partition 0's 100 records, none of 1's 50
        await apply_events(conn, _events()[:3])
        await _replayed(conn, {0: 50})
        found = await _round(conn, database, NOW + timedelta(minutes=3))
        assert found.recounting is not None
        assert (found.recounting.started_at, found.recounting.replayed) == (STARTED, 40)
        assert found.recounting.total == 150
        assert (found.disagreements, found.keys, found.board_rows) == ([], 0, 0)
        assert report(found, True) == [
            f"recount in progress: a rebuild is replaying the events topic since "
            f"{STARTED.isoformat()}: 40 of 150 records (26 %); nothing compared, run the "
            "check again when it ends"
        ]
        assert exit_status(found) == EXIT_RECOUNTING == 75

        # the whole check, replicas' /metrics given: no round, no scrape compares anything
        async def scrape(url: str) -> str:
            raise AssertionError(f"{url} scraped during a recount")

        whole = await check(
            database,
            _settings(database),
            0.1,
            NOW + timedelta(minutes=3),
            boards=True,
            metrics_urls=["http://aggregator-1:8002/metrics"],
            scrape=scrape,
        )
        assert (whole.recounting, whole.disagreements, whole.metrics) == (
            found.recounting,
            [],
            None,
        )

        # the group reaches the end of one partition, not the other: still a recount
        await _replayed(conn, {0: 110, 1: 49})
        found = await _round(conn, database, NOW + timedelta(minutes=4))
        assert found.recounting is not None
        assert found.recounting.replayed == 149

        # what it kept from being reported: the same state with every offset reached (a
        # rebuild that died midway, the aggregators caught up, its row left) is no recount,
        # so it is compared, and the stored figures of before the reset disagree with the
        # events replayed so far
        await _replayed(conn, {1: 50})
        found = await _round(conn, database, NOW + timedelta(minutes=5))
        assert found.recounting is None
        assert {d.kind for d in found.disagreements} >= {"board_figures"}
        assert exit_status(found) == 1
        assert report(found, True)[-1].startswith("checked ")

        # the row gone (the rebuild ended): compared as ever
        await conn.execute("DELETE FROM aggregator.recounts")
        assert (await _round(conn, database, NOW + timedelta(minutes=5))).recounting is None
    finally:
        await conn.close()


async def test_a_rebuild_begun_between_the_rounds_is_said_not_what_the_first_saw(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = await _world(database)
    try:
        await unit_figures(conn, 2, NOW)
        # a stored figure the first round disagrees with: the second would wait up to
        # --board-wait for a newer snapshot, which none comes while the rebuild replays
        await conn.execute(
            "UPDATE board_figures SET value = 0 WHERE unit = '00007' AND indicator = $1", E
        )
        settle = 0.125
        sleep = asyncio.sleep
        begun: list[bool] = []

        async def settling(delay: float, *args: Any) -> Any:
            # the rebuild resets the counters while the check settles between its rounds
            if delay == settle and not begun:
                begun.append(True)
                await _begin_rebuild(conn)
            return await sleep(delay, *args)

        monkeypatch.setattr(asyncio, "sleep", settling)
        clock = asyncio.get_running_loop().time
        began = clock()
        found = await check(
            database,
            _settings(database),
            settle,
            NOW + timedelta(minutes=3),
            boards=True,
            board_wait=timedelta(seconds=60),
        )
        assert begun == [True]
        assert found.recounting is not None
        assert found.recounting.replayed == 0
        assert found.disagreements == []
        assert exit_status(found) == EXIT_RECOUNTING
        # not the board wait: the boards are not frozen by a fault, nothing is coming
        assert clock() - began < 30
    finally:
        await conn.close()
