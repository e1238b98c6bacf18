"""A read's figures come from one state of the database (`tiendo.database.one_state`).

A unit's run rate is its live value less its value a window ago, and that value is the live
value less the day rollups' changes since: two statements. Another replica's batch that
commits between them (an on-time report, which leaves `history_reach` alone) made the
run rate, projection and status of the read those of a value the database never held.
Here such a batch commits between the two statements of a progress read, of a live
leaderboard (whose rollups are read on a second connection) and of a campaign's turn in
a pass (`CampaignIsolation`): each answers as of the state before it, and the next read
has it whole."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from tests.support.identities import READER
from tests.support.stack import Topics, aggregator_settings, running
from tests.support.world import build_world
from tiendo.board import repository as board
from tiendo.board.isolation import CampaignIsolation
from tiendo.counting import apply_events
from tiendo.event import Event, Kind

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=12)
C = "cccd_collected"
DAY, HOUR = timedelta(days=1), timedelta(hours=1)


def _history() -> list[Event]:
    # nothing on the run-rate window's first day, so a value a window ago read a moment
    # later is the same value: two reads of one state agree to the last digit
    return [
        Event("h-1", "00004", C, Kind.INCREMENT, 400, NOW - 10 * DAY),
        Event("h-2", "00004", C, Kind.INCREMENT, 140, NOW - 3 * DAY),
        Event("h-3", "00007", C, Kind.SNAPSHOT, 90, NOW - 2 * DAY),
    ]


# an on-time report from another replica: today's, so `history_reach` does not move
ON_TIME = Event("on-time", "00004", C, Kind.INCREMENT, 700, NOW - HOUR)


async def _world(database: str) -> None:
    await build_world(database, starts_at=START, days=40, targets={"00004": 5000, "00007": 5000})
    conn = await asyncpg.connect(database)
    try:
        await apply_events(conn, _history())
    finally:
        await conn.close()


def _meanwhile(
    other: asyncpg.Connection, read: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    """`read`, after committing `ON_TIME` from `other` the first time it is called."""

    async def first_the_batch(*args: Any, **kwargs: Any) -> Any:
        if not await other.fetchval("SELECT count(*) FROM events WHERE event_id = 'on-time'"):
            await apply_events(other, [ON_TIME])
        return await read(*args, **kwargs)

    return first_the_batch


def _figures(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What a progress answer says that does not move with the clock within a second."""
    return [(i["indicator"], i["value"], i["run_rate_7d"]) for i in body["indicators"]]


def _rows(body: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {r["unit"]["code"]: (r["value"], r["run_rate_7d"]) for r in body["rows"]}


@pytest.mark.parametrize("unit", ["00004", "001"])
async def test_a_progress_read_is_of_the_state_before_a_batch_that_commits_during_it(
    database: str,
    kafka: KafkaBroker,
    topics: Topics,
    monkeypatch: pytest.MonkeyPatch,
    unit: str,
) -> None:
    await _world(database)
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    url = f"/v1/campaigns/c1/progress/{unit}"
    other = await asyncpg.connect(database)
    try:
        async with running(create_aggregator(settings)) as api:
            before = (await api.get(url, headers=READER)).json()
            monkeypatch.setattr(board, "changes_from", _meanwhile(other, board.changes_from))
            during = (await api.get(url, headers=READER)).json()
            monkeypatch.undo()
            after = (await api.get(url, headers=READER)).json()
    finally:
        await other.close()
    assert _figures(during) == _figures(before)
    # the batch is in the next read, value and run rate alike (700 more over 7 days)
    (_, value, rate), (_, value_after, rate_after) = _figures(before)[0], _figures(after)[0]
    assert value_after == value + 700
    assert rate_after == pytest.approx(rate + 100)


async def test_a_live_leaderboard_reads_its_rollups_in_the_state_of_its_counters(
    database: str, kafka: KafkaBroker, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live leaderboard reads the day rollups on a second connection while the first
    reads the counters; the second reads the first's snapshot."""
    await _world(database)
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    url = "/v1/campaigns/c1/leaderboard"
    params = {"level": "3", "indicator": C}
    other = await asyncpg.connect(database)
    try:
        async with running(create_aggregator(settings)) as api:
            before = (await api.get(url, params=params, headers=READER)).json()
            for name in ("changes_from", "changes_from_level"):
                monkeypatch.setattr(board, name, _meanwhile(other, getattr(board, name)))
            during = (await api.get(url, params=params, headers=READER)).json()
            monkeypatch.undo()
            after = (await api.get(url, params=params, headers=READER)).json()
    finally:
        await other.close()
    assert _rows(during) == _rows(before)
    value, rate = _rows(before)["00004"]
    assert _rows(after)["00004"] == (value + 700, pytest.approx(rate + 100))


@pytest.mark.parametrize("one_state", [True, False])
async def test_a_campaigns_turn_in_a_pass_reads_one_state(database: str, one_state: bool) -> None:
    """The control (`reads_one_state` off) sees the batch between its two reads, so the
    test can tell the two apart."""
    await _world(database)
    conn = await asyncpg.connect(database)
    other = await asyncpg.connect(database)
    try:
        campaigns = await board.campaigns(conn)
        counted = "SELECT value FROM progress WHERE campaign_id = 'c1' AND unit = '00004'"

        async def work(_: object) -> tuple[int, int]:
            first = await conn.fetchval(counted)
            await apply_events(other, [ON_TIME])
            return first, await conn.fetchval(counted)

        done = await CampaignIsolation().each(
            conn, campaigns.values(), work, reads_one_state=one_state
        )
    finally:
        await other.close()
        await conn.close()
    first, second = done["c1"]
    assert (second == first) is one_state
    assert second - first in (0, 700)
