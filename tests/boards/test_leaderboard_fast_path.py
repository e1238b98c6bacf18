"""The leaderboard's fast path (issue 15: judged per window rather than per unit, the run-rate
and previous-briefing rollups read once, days behind walked per unit, rows built per page,
off the event loop) held equal to the straightforward computation it replaced: each unit
judged by `pace.assess` on its own plan, the days behind walked day by day from the raw day
rollups, every row a validated model. On a world made to expose a difference: ties in pct
and in pace, a unit without a target, units silent for days, a unit of its own deadline, a
baseline, children done; live and `as_of`, the previous briefing on the run-rate window's
day and on another, before the start, none; a reader who sees one subtree; pages."""

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.localstack import KafkaBroker
from services.aggregator import admin
from services.aggregator.admin import TargetIn, UnitIn
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.models import LeaderboardRow, UnitRef
from services.aggregator.progress import _figures, leaderboard
from tests.support.identities import READER, bearer, issue_identity
from tests.support.notifier import Feed, progress
from tests.support.stack import Topics, aggregator_settings, running
from tests.support.world import build_world
from tiendo.board import days
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign
from tiendo.board.figures import LiveValues, Verdict, judge_many, ranked
from tiendo.board.movement import day_ends, is_behind, movement_label, streaks, week_before
from tiendo.board.plans import earlier_plan
from tiendo.board.repository import Counter
from tiendo.counting import ValueAt
from tiendo.identity.model import Role
from tiendo.pace import Milestone, Status, Thresholds, assess, expected, run_rate_window

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)  # 10:00 in Hà Nội
DAYS = 30
INDICATOR = "cccd_collected"

# city 01 → districts D1, D2, D3 → wards; W11 and W12 have streets (level 4)
TREE = [
    UnitIn(code="01", name="Thành phố", level=1),
    *(UnitIn(code=f"D{d}", name=f"Quận {d}", level=2, parent_code="01") for d in (1, 2, 3)),
    *(
        UnitIn(code=f"W{d}{w}", name=f"Phường {d}{w}", level=3, parent_code=f"D{d}")
        for d in (1, 2, 3)
        for w in (1, 2, 3, 4)
    ),
    *(
        UnitIn(code=f"S{w}{s}", name=f"Tổ {w}{s}", level=4, parent_code=f"W{w}")
        for w in (11, 12)
        for s in (1, 2, 3)
    ),
]
# W34 has no target (it reports all the same); W33 has a baseline; W32 its own deadline;
# the streets of W11 and W12 carry theirs, summed up to their wards
TARGETS = {
    **{f"W{d}{w}": 600 for d in (1, 2, 3) for w in (1, 2, 3, 4)},
    "W33": 900,
    **{f"S{w}{s}": 200 for w in (11, 12) for s in (1, 2, 3)},
}
del TARGETS["W34"]
DAY = timedelta(days=1)


def _reports() -> list[Any]:
    at = STARTS + timedelta(hours=2)
    out = [
        # W21 and W22: the same figures all along (ties in pct and pace, broken by code)
        *(
            progress(u, 40 * k, at=at + k * DAY + timedelta(hours=3))
            for u in ("W21", "W22")
            for k in range(1, 14)
        ),
        # W23 the same values as W21 but with W32 (own deadline) the same pct, another pace
        *(
            progress(u, 40 * k, at=at + k * DAY + timedelta(hours=5))
            for u in ("W23", "W32")
            for k in range(1, 14)
        ),
        # W13, W24: silent since day 1 and day 4 (stale, behind for days)
        progress("W13", 30, at=at + timedelta(hours=1)),
        progress("W24", 90, at=at + 4 * DAY),
        # W31 done on day 9; W33 over its baseline; W34 without a target
        progress("W31", 300, at=at + 3 * DAY),
        progress("W31", 650, at=at + 9 * DAY),
        *(progress("W33", 100 + 35 * k, at=at + k * DAY) for k in range(0, 14, 2)),
        *(progress("W34", 10 * k, at=at + k * DAY) for k in range(1, 14, 3)),
        # W14 late then catching up: behind, then not, then behind again
        progress("W14", 20, at=at + 5 * DAY),
        progress("W14", 260, at=at + 8 * DAY),
        progress("W14", 270, at=at + 12 * DAY),
    ]
    # the streets: one done, the others at several paces
    for w in (11, 12):
        out += [
            progress(f"S{w}1", 200, at=at + 6 * DAY + timedelta(hours=w)),
            progress(f"S{w}2", 15 * w, at=at + 10 * DAY),
            progress(f"S{w}3", 5 * w, at=at + 2 * DAY),
        ]
    return out


async def _world(database: str) -> None:
    await build_world(database, starts_at=STARTS, days=DAYS, targets={"W11": 600}, units=TREE)
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            await admin.upsert_targets(
                conn,
                "c1",
                [
                    TargetIn(
                        unit=u,
                        indicator=INDICATOR,
                        target=t,
                        baseline=100 if u == "W33" else 0,
                        deadline=STARTS + 20 * DAY if u == "W32" else None,
                    )
                    for u, t in TARGETS.items()
                ],
                "test",
            )
    finally:
        await conn.close()
    await Feed(database).send(*_reports())


# The straightforward computation the fast path replaced -----------------------------------


async def _judged(
    conn: asyncpg.Connection,
    campaign: Campaign,
    counters: Sequence[Counter],
    at: datetime,
    live: bool,
    *,
    run_rate: bool = True,
) -> list[Verdict]:
    """Each counter judged on its own by `pace.assess`: values live or from the history,
    a run-rate window ago from `days.values_at`."""
    if live:
        values = {c.unit: ValueAt(c.value, c.last_event_at) for c in counters}
    else:
        values = await board.values_as_of(
            conn,
            campaign.id,
            INDICATOR,
            [c.unit for c in counters],
            campaign.starts_at,
            min(at, campaign.deadline),
        )
    window = run_rate_window(campaign.plan(0, 0), at)
    ago: Mapping[str, int] | None = None
    if window is not None and run_rate:
        live_values = {INDICATOR: {c.unit: c.value for c in counters}}
        start = min(at, campaign.deadline) - window
        ago = (await days.values_at(conn, campaign, live_values, start))[INDICATOR]
    return _assessed(campaign, counters, values, ago, at)


def _assessed(
    campaign: Campaign,
    counters: Sequence[Counter],
    values: Mapping[str, ValueAt],
    ago: Mapping[str, int] | None,
    at: datetime,
) -> list[Verdict]:
    """Each counter judged alone by `pace.assess` on its own plan."""
    out = []
    for c in counters:
        now = values.get(c.unit, ValueAt(0, None))
        p = assess(
            campaign.plan(c.baseline, c.target, c.deadline),
            now.value,
            at,
            last_event_at=now.last_event_at,
            value_window_ago=ago.get(c.unit, 0) if ago is not None else None,
            thresholds=campaign.thresholds,
        )
        deadline = c.deadline or campaign.deadline
        place = (campaign.id, c.unit, c.unit_name, c.level, c.parent, c.indicator)
        out.append(Verdict(*place, deadline, p, now.last_event_at))
    return out


def _days_behind_by_day(
    campaign: Campaign,
    verdicts: Sequence[Verdict],
    at: datetime,
    live: Mapping[str, int],
    rows: Sequence[tuple[str, date, int]],
) -> dict[str, int]:
    """Day by day back from `at`: a unit's value at each end is its live value less every
    change of the days from that end's day on, judged against `expected` of its plan."""
    out: dict[str, int] = {}
    for v in verdicts:
        n = int(is_behind(v, campaign.thresholds.behind))
        if n:
            p = v.progress
            for end in day_ends(at, campaign):
                day = days.local_day(campaign, end)
                value = live.get(v.unit, 0) - sum(
                    change for unit, d, change in rows if unit == v.unit and d >= day
                )
                exp = expected(campaign.plan(p.baseline, p.target, v.deadline), end)
                if not (value < p.target and exp > 0 and value / exp < campaign.thresholds.behind):
                    break
                n += 1
        out[v.unit] = n
    return out


async def _reference(
    conn: asyncpg.Connection,
    campaign: Campaign,
    level: int,
    at: datetime,
    live: bool,
    previous_at: datetime | None,
) -> list[dict[str, Any]]:
    plan = None if live else await earlier_plan(conn, campaign, at)
    counters = board.on_plan(
        await board.counters_at_level(conn, campaign.id, INDICATOR, level), plan
    )
    now = [v for v in await _judged(conn, campaign, counters, at, live) if v.progress.target > 0]
    then: list[Verdict] = []
    if previous_at is not None and previous_at > campaign.starts_at:
        # the ranks then from the history, live or not (live equals `as_of` now; the fast
        # path reads a live board's from the rollups at a local midnight, exact there)
        targeted = [c for c in counters if c.target > 0]
        judged = await _judged(conn, campaign, targeted, previous_at, False)
        then = [v for v in judged if v.progress.target > 0]
    every = await board.counters_at_level(conn, campaign.id, INDICATOR, level)
    rows = [
        (r["unit"], r["day"], r["change"])
        for r in await conn.fetch(
            "SELECT unit, day, change FROM subtree_days WHERE campaign_id = $1 AND indicator = $2",
            campaign.id,
            INDICATOR,
        )
    ]
    current = {c.unit: c.value for c in every}
    behind = _days_behind_by_day(campaign, now, at, current, rows)
    kids = await _judged(
        conn,
        campaign,
        board.on_plan(await board.counters_at_level(conn, campaign.id, INDICATOR, level + 1), plan),
        at,
        live,
    )
    previous = {v.unit: rank for rank, v in enumerate(ranked(then), start=1)}
    out = []
    for rank, v in enumerate(ranked(now), start=1):
        # the children the campaign judges: those with a target
        mine = [k for k in kids if k.parent == v.unit and k.progress.target > 0]
        was = previous.get(v.unit)
        row = LeaderboardRow(
            rank=rank,
            previous_rank=was,
            rank_change=None if was is None else was - rank,
            movement=movement_label(was, rank),
            days_behind=behind[v.unit],
            unit=UnitRef(code=v.unit, name=v.unit_name, level=v.level),
            parent=v.parent,
            **_figures(v, len(mine), sum(k.progress.status is Status.DONE for k in mine)),
        )
        out.append(row.model_dump())
    return out


MOMENTS = [
    STARTS + timedelta(minutes=30),  # no run-rate window yet
    STARTS + 3 * DAY + timedelta(hours=7),
    STARTS + 12 * DAY + timedelta(hours=20),  # another local day than 12 × 24 h later
    STARTS + 21 * DAY,  # past W32's own deadline
    STARTS + (DAYS + 2) * DAY,  # past the campaign's
]


def _previous(campaign: Campaign, at: datetime) -> list[datetime | None]:
    # (a local midnight, the default's kind, is read from the rollups by a live board)
    return [
        None,
        STARTS - DAY,
        at - 7 * DAY,
        at - 2 * DAY - timedelta(hours=5),
        week_before(campaign, at),
    ]


async def test_the_fast_leaderboard_equals_the_straightforward_one(database: str) -> None:
    await _world(database)
    conn = await asyncpg.connect(database)
    side = await asyncpg.connect(database)
    try:
        campaign = await board.campaign(conn, "c1")
        assert campaign is not None
        seen: set[tuple[int, int]] = set()
        for at in MOMENTS:
            for previous_at in _previous(campaign, at):
                for live in (True, False):
                    for level in (2, 3):
                        want = await _reference(conn, campaign, level, at, live, previous_at)
                        board_then = functools.partial(
                            leaderboard,
                            conn,
                            campaign,
                            INDICATOR,
                            level,
                            at,
                            live=live,
                            previous_at=previous_at,
                        )
                        # a live board's rollups read beside its counters: the same rows
                        for beside in (None, side):
                            got = await board_then(beside=beside)
                            assert [r.model_dump() for r in got] == want, (
                                at,
                                previous_at,
                                live,
                                level,
                                beside,
                            )
                        # every row alone and any page is the same row
                        assert [got[i].model_dump() for i in range(len(got))] == want
                        assert [r.model_dump() for r in got[3:7]] == want[3:7]
                        # a page reads the days behind of its own rows only, and a row
                        # whose days were not read is refused, never shown as 0
                        page = await board_then(settle=False)
                        if len(page) > 7:
                            with pytest.raises(LookupError):
                                page[7]
                        await page.settle(conn, slice(3, 7))
                        assert [r.model_dump() for r in page[3:7]] == want[3:7]
                        seen |= {(r["rank"], r["days_behind"]) for r in want}
        # the world exposes what it is meant to: ties, long streaks, children done
        ward_board = await _reference(conn, campaign, 3, MOMENTS[2], True, MOMENTS[2] - 7 * DAY)
        # the level's rollups without its codes are the codes' rollups (and no fewer)
        moved: set[int] = set()
        for level in (2, 3, 4):
            codes = await board.level_codes(conn, level)
            for day in {days.local_day(campaign, at - 7 * DAY) for at in MOMENTS}:
                by_level = await board.changes_from_level(conn, "c1", [INDICATOR], level, day)
                by_codes = await board.changes_from(conn, "c1", [INDICATOR], codes, day)
                assert by_level == by_codes, (level, day)
                moved |= {level for v in by_codes.values() if v != (0, 0)}
        assert moved == {2, 3, 4}
    finally:
        await conn.close()
        await side.close()
    by_unit = {r["unit"]["code"]: r for r in ward_board}
    assert "W34" not in by_unit  # no target: not ranked
    assert (by_unit["W21"]["pct"], by_unit["W21"]["pace"]) == (
        by_unit["W22"]["pct"],
        by_unit["W22"]["pace"],
    )
    assert by_unit["W21"]["rank"] + 1 == by_unit["W22"]["rank"]
    assert by_unit["W23"]["pct"] == by_unit["W32"]["pct"]
    assert by_unit["W23"]["pace"] != by_unit["W32"]["pace"]
    assert by_unit["W13"]["days_behind"] > 5
    assert by_unit["W11"]["children_done"] == 1
    assert by_unit["W11"]["children_total"] == 3
    assert max(d for _, d in seen) > 5


async def test_a_counters_row_reads_as_its_counter(database: str) -> None:
    """A ranking reads `CounterRow`s by name and makes counters of the rows it judges: each
    column it reads, and the counter made, are those `counters_at_level` reads (a baseline,
    a unit's own deadline, silent units and one without a target among them)."""
    await _world(database)
    conn = await asyncpg.connect(database)
    try:
        for level in (1, 2, 3, 4):
            rows = await board.counter_rows_at_level(conn, "c1", INDICATOR, level)
            counters = await board.counters_at_level(conn, "c1", INDICATOR, level)
            assert rows
            assert [r.as_counter() for r in rows] == counters
            for r, c in zip(rows, counters, strict=True):
                read = (r.unit, r.value, r.baseline, r.target, r.deadline, r.last_event_at)
                assert read == (c.unit, c.value, c.baseline, c.target, c.deadline, c.last_event_at)
        seen = await board.counters_at_level(conn, "c1", INDICATOR, 3)
        assert {c.baseline for c in seen} != {0}
        assert any(c.deadline for c in seen)
    finally:
        await conn.close()


async def test_a_readers_pages_are_the_whole_boards_rows(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await _world(database)
    district = bearer(await issue_identity(database, "district-2", Role.reader, ["D2"]))
    settings_ = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    at = MOMENTS[2]
    url = "/v1/campaigns/c1/leaderboard"
    params = {"level": "3", "indicator": INDICATOR, "as_of": at.isoformat()}
    async with running(create_aggregator(settings_)) as api:
        whole = (await api.get(url, params={**params, "limit": "1000"}, headers=READER)).json()
        pages = [
            (
                await api.get(
                    url, params={**params, "offset": str(o), "limit": "4"}, headers=READER
                )
            ).json()
            for o in (0, 4, 8, 12)
        ]
        mine = (await api.get(url, params=params, headers=district)).json()
        mine_csv = await api.get(url, params={**params, "format": "csv"}, headers=district)
    rows = whole["rows"]
    assert whole["total"] == len(rows) == 11
    assert [r for p in pages for r in p["rows"]] == rows
    assert all(p["total"] == 11 for p in pages)
    theirs = [r for r in rows if r["parent"] == "D2"]
    assert mine["rows"] == theirs  # each with its rank in the whole board
    assert mine["total"] == len(theirs)
    exported = mine_csv.content.decode("utf-8-sig").splitlines()[1:]
    assert [line.split(",")[1] for line in exported] == [r["unit"]["code"] for r in theirs]


# The pure steps against their straightforward forms, on any figures -------------------------

CAMPAIGN = Campaign(
    "c",
    "c",
    STARTS,
    STARTS + DAYS * DAY,
    "Asia/Ho_Chi_Minh",
    (INDICATOR,),
    Thresholds(),
    (Milestone(STARTS + 10 * DAY, 0.5),),
)
units = st.lists(
    st.tuples(
        st.integers(0, 3),  # target, small: ties
        st.integers(0, 2),  # baseline
        st.sampled_from([None, STARTS + 9 * DAY, STARTS + 20 * DAY]),  # own deadline
        st.integers(0, 4),  # value
        st.one_of(st.none(), st.integers(0, 4)),  # value a window ago
        st.one_of(st.none(), st.integers(-5 * 24, 30 * 24)),  # last report, hours from start
    ),
    max_size=12,
)
moments = st.integers(-24, (DAYS + 3) * 24).map(lambda h: STARTS + timedelta(hours=h, minutes=17))


def _counters(
    drawn: list[tuple[Any, ...]],
) -> tuple[list[Counter], dict[str, ValueAt], dict[str, int]]:
    counters, values, ago = [], {}, {}
    for i, (target, baseline, deadline, value, before, last) in enumerate(drawn):
        unit = f"u{i:02}"
        counters.append(
            Counter(
                "c",
                unit,
                unit,
                3,
                None,
                INDICATOR,
                value * 100,
                baseline * 100,
                target * 100,
                deadline,
                None,
            )
        )
        reported = STARTS + timedelta(hours=last) if last is not None else None
        values[unit] = ValueAt(value * 100, reported)
        if before is not None:
            ago[unit] = before * 100
    return counters, values, ago


@given(units, moments, st.booleans())
def test_judging_many_is_judging_each(
    drawn: list[tuple[Any, ...]], at: datetime, window: bool
) -> None:
    counters, values, ago = _counters(drawn)
    fast = judge_many(CAMPAIGN, counters, values, ago if window else None, at)
    for c in counters:
        now = values[c.unit]
        alone = assess(
            CAMPAIGN.plan(c.baseline, c.target, c.deadline),
            now.value,
            at,
            last_event_at=now.last_event_at,
            value_window_ago=ago.get(c.unit, 0) if window else None,
            thresholds=CAMPAIGN.thresholds,
        )
        assert fast[c.unit].progress == alone


rolled_changes = st.dictionaries(
    st.integers(0, 13).map(lambda i: f"u{i:02}"),
    st.tuples(st.integers(-500, 500), st.integers(-500, 500)),  # after the day, on it
)


@given(units, moments, rolled_changes, st.floats(0.0, 1.0))
def test_values_made_when_asked_are_the_values_made_at_once(
    drawn: list[tuple[Any, ...]], at: datetime, changed: dict[str, tuple[int, int]], share: float
) -> None:
    """A live leaderboard's values now and a window ago are worked out only for the rows it
    judges (`LiveValues`, `Rolled.values_when_asked`): the same as worked out for all."""
    counters, _, _ = _counters(drawn)
    live = LiveValues(counters)
    assert dict(live) == {c.unit: ValueAt(c.value, c.last_event_at) for c in counters}
    assert "u99" not in live
    rolled = days.Rolled({(INDICATOR, u): c for u, c in changed.items()}, share)
    now = {c.unit: c.value for c in counters}
    at_once = rolled.values(INDICATOR, now)
    when_asked = rolled.values_when_asked(INDICATOR, now)
    assert dict(when_asked) == at_once
    assert len(when_asked) == len(at_once)
    assert when_asked.get("u99", 0) == at_once.get("u99", 0) == 0
    assert judge_many(CAMPAIGN, counters, live, when_asked, at) == judge_many(
        CAMPAIGN, counters, dict(live), at_once, at
    )


changes = st.dictionaries(
    st.integers(0, DAYS + 3),  # days from the start
    st.integers(-150, 300).filter(bool),
    max_size=DAYS,
)


@settings(max_examples=200)
@given(units, st.lists(changes, min_size=12, max_size=12), moments)
def test_walking_each_unit_back_is_walking_each_day_back(
    drawn: list[tuple[Any, ...]], changed: list[dict[int, int]], at: datetime
) -> None:
    counters, values, ago = _counters(drawn)
    verdicts = list(judge_many(CAMPAIGN, counters, values, ago, at).values())
    live = {c.unit: values[c.unit].value for c in counters}
    first = days.local_day(CAMPAIGN, STARTS)
    rows = [
        (c.unit, first + timedelta(days=d), change)
        for c, mine in zip(counters, changed, strict=False)
        for d, change in mine.items()
    ]
    ends = day_ends(at, CAMPAIGN)
    # as `days.day_changes` reads them: from the earliest end's day on, days after it
    since = days.local_day(CAMPAIGN, ends[-1]) if ends else first
    by_unit: days.Changes = {}
    for unit, day, change in sorted(rows, key=lambda r: r[1], reverse=True):
        if day >= since:
            found = by_unit.setdefault(unit, ([], []))
            found[0].append((day - since).days)
            found[1].append(change)
    fast = streaks(CAMPAIGN, verdicts, ends, live, by_unit)
    assert fast == _days_behind_by_day(CAMPAIGN, verdicts, at, live, rows)
