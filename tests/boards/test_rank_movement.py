"""Rank movement (issue 14): each unit of a leaderboard carries its rank at the previous
briefing, the change (▲3, ▼12, new) and its days behind in a row, the same in the API,
the CSV and the XLSX."""

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.models import LeaderboardRow
from services.aggregator.progress import leaderboard
from tests.support.identities import READER
from tests.support.notifier import Feed, progress
from tests.support.stack import Topics, aggregator_settings, running
from tests.support.world import build_world
from tiendo.board import repository as board
from tiendo.board.figures import Verdict
from tiendo.board.movement import movement_label, standings
from tiendo.clock import ManualClock
from tiendo.counting import apply_events
from tiendo.event import Event, Kind
from tiendo.pace import Progress, Status

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)  # 10:00 in Hà Nội
PREVIOUS = STARTS + timedelta(days=5)  # the previous briefing
CCCD = "cccd_collected"
NOW = STARTS + timedelta(days=12, hours=2)


@given(st.integers(1, 600), st.integers(1, 600))
def test_the_arrow_says_how_many_places_and_which_way(previous: int, now: int) -> None:
    label = movement_label(previous, now)
    if previous == now:
        assert label == "="
    else:
        arrow, places = label[0], int(label[1:])
        assert places == abs(previous - now)
        assert arrow == ("▲" if now < previous else "▼")
    assert movement_label(None, now) == "new"


@given(st.permutations(list(range(12))), st.permutations(list(range(12))), st.integers(0, 12))
def test_movement_is_the_places_between_the_two_rankings(
    now: list[int], then: list[int], dropped: int
) -> None:
    # pct orders a ranking; units left out of the earlier one are new
    def verdict(i: int, pct: float) -> Verdict:
        p = Progress(0, 0, 100, pct, 0.0, None, None, None, None, None, Status.BEHIND)
        when = datetime(2023, 5, 1, tzinfo=UTC)
        return Verdict("c", f"u{i:02}", "", 3, None, "x", when, p, None)

    current = [verdict(u, 100.0 - place) for place, u in enumerate(now)]
    earlier = [verdict(u, 100.0 - place) for place, u in enumerate(then) if u >= dropped]
    rows = standings(current, earlier, {})
    assert [r.rank for r in rows] == list(range(1, 13))
    previous = {v.unit: rank for rank, v in enumerate(earlier, start=1)}
    for r in rows:
        assert r.previous_rank == previous.get(r.verdict.unit)
        if r.previous_rank is None:
            assert r.movement == "new"
        else:
            assert r.change == r.previous_rank - r.rank


async def _world(database: str) -> None:
    await build_world(database, starts_at=STARTS, days=50)
    # Wards of 1000 over 50 days: the plan is 20 a day. At the previous briefing 00010 led
    # and 00004 was last; by now 00004 leads and 00010 fell to last, behind since day 9.
    await Feed(database).send(
        progress("00004", 10, at=PREVIOUS - timedelta(hours=1)),
        progress("00007", 50, at=PREVIOUS - timedelta(hours=1)),
        progress("00010", 120, at=PREVIOUS - timedelta(hours=1)),
        progress("00004", 300, at=NOW - timedelta(hours=1)),
        progress("00007", 250, at=NOW - timedelta(hours=1)),
        progress("00010", 150, at=STARTS + timedelta(days=8, hours=1)),
    )


async def _leaderboard(database: str, previous_at: datetime) -> Sequence[LeaderboardRow]:
    conn = await asyncpg.connect(database)
    try:
        campaign = await board.campaign(conn, "c1")
        assert campaign is not None
        return await leaderboard(
            conn, campaign, "cccd_collected", 3, NOW, live=False, previous_at=previous_at
        )
    finally:
        await conn.close()


async def test_the_leaderboard_shows_movement_since_the_previous_briefing(database: str) -> None:
    await _world(database)
    rows = await _leaderboard(database, PREVIOUS)
    got = [(r.rank, r.unit.code, r.previous_rank, r.rank_change, r.movement) for r in rows]
    assert got == [
        (1, "00004", 3, 2, "▲2"),
        (2, "00007", 2, 0, "="),
        (3, "00010", 1, -2, "▼2"),
    ]
    # 00010: 120 on day 5, 150 on 18 May (local) and nothing since. At the end of 16 May
    # the plan was 132 (120 is 91 %: not behind); at the end of 17 May 152 (79 %); then
    # it stayed under 90 % at the ends of 17–21 May and is today, 22 May: six days.
    by_unit = {r.unit.code: r.days_behind for r in rows}
    assert by_unit == {"00004": 0, "00007": 0, "00010": 6}


async def test_before_any_briefing_every_unit_is_new(database: str) -> None:
    await _world(database)
    rows = await _leaderboard(database, STARTS)
    assert {(r.previous_rank, r.rank_change, r.movement) for r in rows} == {(None, None, "new")}


async def test_the_api_and_exports_carry_the_same_movement(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await _world(database)
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    params = {
        "level": "3",
        "indicator": "cccd_collected",
        "as_of": NOW.isoformat(),
        "previous": PREVIOUS.isoformat(),
    }
    async with running(create_aggregator(settings)) as api:
        api.headers.update(READER)
        url = "/v1/campaigns/c1/leaderboard"
        body = (await api.get(url, params=params)).json()
        as_csv = await api.get(url, params={**params, "format": "csv"})
        as_xlsx = await api.get(url, params={**params, "format": "xlsx"})
        weekly = {k: v for k, v in params.items() if k != "previous"}
        default = (await api.get(url, params=weekly)).json()
    assert body["previous_at"] == PREVIOUS.isoformat().replace("+00:00", "Z")
    rows = [(r["unit"]["code"], r["movement"], r["days_behind"]) for r in body["rows"]]
    assert rows == [("00004", "▲2", 0), ("00007", "=", 0), ("00010", "▼2", 6)]
    exported = list(csv.DictReader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert [(r["code"], r["movement"], r["days_behind"]) for r in exported] == [
        (c, m, str(d)) for c, m, d in rows
    ]
    assert [r["previous_rank"] for r in exported] == ["3", "2", "1"]
    sheet = load_workbook(io.BytesIO(as_xlsx.content)).active
    assert isinstance(sheet, Worksheet)
    header = [c.value for c in sheet[2]]
    moved = header.index("Thay đổi") + 1
    assert [sheet.cell(row=i, column=moved).value for i in (3, 4, 5)] == ["▲2", "=", "▼2"]
    # without `previous`, movement is from the end of the local day a week before as_of:
    # 15 May's last microsecond in Hà Nội
    assert default["previous_at"] == "2023-05-15T16:59:59.999999Z"


async def test_a_live_board_moves_its_units_as_the_board_as_of_now_does(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    """Live equals `as_of` now, rank movement too. The live board reads the ranks then from
    its day rollups, which interpolate inside a day: 00004's 700 at 12:01 a week ago read
    as half done at noon, so it was first then live and second `as_of` (▲1 against =).
    At a day's end they are exact, which the default `previous` is; at its start not
    for a report stamped at that very instant: the rollups file it under the day it
    starts, `as_of` counts it."""
    now = STARTS + timedelta(days=12, hours=2)  # noon in Hà Nội
    week_ago = now - timedelta(days=7)
    midnight = datetime(2023, 5, 14, 17, 0, tzinfo=UTC)  # 15 May 00:00 in Hà Nội
    await build_world(database, starts_at=STARTS, days=50)
    conn = await asyncpg.connect(database)
    await apply_events(
        conn,
        [
            Event("a", "00004", CCCD, Kind.INCREMENT, 700, week_ago + timedelta(minutes=1)),
            Event("b", "00007", CCCD, Kind.INCREMENT, 300, STARTS + timedelta(days=1)),
            Event("c", "00010", CCCD, Kind.INCREMENT, 250, STARTS + timedelta(days=1)),
            # a report stamped at the very midnight that starts 15 May
            Event("d", "00010", CCCD, Kind.INCREMENT, 100, midnight),
            Event("e", "00007", CCCD, Kind.INCREMENT, 1, now - timedelta(hours=1)),
        ],
    )
    await conn.close()
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    boards: dict[tuple[str, str], list[tuple[str, int, int | None, str]]] = {}
    async with running(create_aggregator(settings, ManualClock(now))) as api:
        api.headers.update(READER)
        for previous in (None, week_ago, midnight, midnight - timedelta(seconds=1)):
            named = {"previous": previous.isoformat()} if previous else {}
            for read, at in (("live", {}), ("as_of now", {"as_of": now.isoformat()})):
                params = {"level": "3", "indicator": CCCD, **named, **at}
                r = await api.get("/v1/campaigns/c1/leaderboard", params=params)
                assert r.status_code == 200, r.text
                boards[str(previous), read] = [
                    (row["unit"]["code"], row["rank"], row["previous_rank"], row["movement"])
                    for row in r.json()["rows"]
                ]
            assert boards[str(previous), "live"] == boards[str(previous), "as_of now"], previous
    # what the history says then: a week ago 00004 had not reported yet; at the midnight
    # 00010 had its 100 of that instant, and a second before it had not
    assert boards[str(week_ago), "live"] == [
        ("00004", 1, 3, "▲2"),
        ("00010", 2, 1, "▼1"),
        ("00007", 3, 2, "▼1"),
    ]
    assert [u for u, *_ in sorted(boards[str(midnight), "live"], key=lambda r: r[2] or 0)] == [
        "00010",
        "00007",
        "00004",
    ]
    assert boards[str(midnight - timedelta(seconds=1)), "live"][1:] == [
        ("00010", 2, 2, "="),
        ("00007", 3, 1, "▼2"),
    ]
    # the default: the end of 15 May, after 00004's 700: nobody has moved since
    assert boards["None", "live"] == [
        ("00004", 1, 1, "="),
        ("00010", 2, 2, "="),
        ("00007", 3, 3, "="),
    ]


async def _live_and_as_of_now(
    database: str,
    kafka: KafkaBroker,
    topics: Topics,
    now: datetime,
    previous: Sequence[datetime],
) -> None:
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    async with running(create_aggregator(settings, ManualClock(now))) as api:
        api.headers.update(READER)
        for then in previous:
            boards = []
            for at in ({}, {"as_of": now.isoformat()}):
                params = {"level": "3", "indicator": CCCD, "previous": then.isoformat(), **at}
                r = await api.get("/v1/campaigns/c1/leaderboard", params=params)
                assert r.status_code == 200, r.text
                boards.append(
                    [(row["unit"]["code"], row["previous_rank"]) for row in r.json()["rows"]]
                )
            assert boards[0] == boards[1], then


async def test_live_moves_as_as_of_now_by_a_deadline_inside_a_day(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    """A report at the deadline counts: the instant before a deadline at 10:00 is no
    day's end, though its day's part in the campaign ends there."""
    await build_world(database, starts_at=STARTS, days=10)
    deadline = STARTS + timedelta(days=10)
    conn = await asyncpg.connect(database)
    try:
        await apply_events(
            conn,
            [
                Event("a", "00004", CCCD, Kind.INCREMENT, 500, STARTS + timedelta(days=1)),
                Event("b", "00007", CCCD, Kind.INCREMENT, 400, STARTS + timedelta(days=1)),
                Event("c", "00007", CCCD, Kind.INCREMENT, 200, deadline),
            ],
        )
    finally:
        await conn.close()
    instant = timedelta(microseconds=1)
    await _live_and_as_of_now(
        database,
        kafka,
        topics,
        deadline + timedelta(days=2),
        [deadline - 2 * instant, deadline - instant, deadline],
    )


async def test_live_moves_as_as_of_now_where_the_clocks_go_back_at_midnight(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    """Santiago, 6 April 2024: at midnight the clocks go back to 23:00, so the last hour
    of the day happens twice; an hour before the day ends is no day's end."""
    starts = datetime(2024, 3, 20, 12, 0, tzinfo=UTC)
    await build_world(database, starts_at=starts, days=50)
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("UPDATE campaigns SET timezone = 'America/Santiago'")
        early = starts + timedelta(days=5)
        await apply_events(
            conn,
            [
                Event("a", "00004", CCCD, Kind.INCREMENT, 500, early),
                Event("b", "00007", CCCD, Kind.INCREMENT, 400, early),
                # 23:45 of 6 April, its second time (-04)
                Event(
                    "c", "00007", CCCD, Kind.INCREMENT, 200, datetime(2024, 4, 7, 3, 45, tzinfo=UTC)
                ),
            ],
        )
    finally:
        await conn.close()
    await _live_and_as_of_now(
        database,
        kafka,
        topics,
        datetime(2024, 4, 12, 12, 0, tzinfo=UTC),
        # 23:30 the first and the second time, and the day's real last instant
        [
            datetime(2024, 4, 7, 2, 30, tzinfo=UTC),
            datetime(2024, 4, 7, 3, 30, tzinfo=UTC),
            datetime(2024, 4, 7, 3, 59, 59, 999999, tzinfo=UTC),
        ],
    )


async def test_a_previous_briefing_after_as_of_is_refused(database: str) -> None:
    await _world(database)
    settings = aggregator_settings(database, "127.0.0.1:1", Topics.unique(), consume=False)
    url = "/v1/campaigns/c1/leaderboard"
    board = {"level": "3", "indicator": CCCD}
    async with running(create_aggregator(settings, ManualClock(NOW))) as api:
        api.headers.update(READER)

        async def status(**params: datetime) -> int:
            named = {k: v.isoformat() for k, v in params.items()}
            r = await api.get(url, params={**board, **named})
            if r.status_code == 422:
                assert r.headers["content-type"].startswith("application/problem+json")
                assert [e["field"] for e in r.json()["errors"]] == ["previous"], r.text
            return r.status_code

        # arrows measured against a later ranking than the one they stand on: was 200
        assert await status(as_of=PREVIOUS, previous=PREVIOUS + timedelta(seconds=1)) == 422
        assert await status(as_of=PREVIOUS, previous=NOW) == 422
        r = await api.get(
            url,
            params={
                **board,
                "as_of": PREVIOUS.isoformat(),
                "previous": NOW.isoformat(),
                "format": "csv",
            },
        )
        assert r.status_code == 422
        # the same moment, or moments both past now (each read as now), are no movement
        assert await status(as_of=PREVIOUS, previous=PREVIOUS) == 200
        assert await status(previous=NOW + timedelta(days=3)) == 200
        later = NOW + timedelta(days=1)
        assert await status(as_of=later, previous=later + timedelta(days=1)) == 200
        assert await status(as_of=NOW, previous=PREVIOUS) == 200
