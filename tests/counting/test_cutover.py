"""Counting across a cut-over (docs/units-over-time.md): events land in the version their
code meant when they happened; a campaign reports on the tree of its moment, every closed
version carried into the new tree (whole, by shares to the unit, or unallocated at the
lowest common unit); live equals `as_of`; the allocation by shares is one rule in SQL and
Python."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.localstack import PostgresServer
from services.aggregator import admin, cutover
from services.aggregator.admin import CampaignIn, TargetIn
from services.aggregator.deadletters import dead_letter_kind
from services.aggregator.repository.positions import DeadLetter
from tests.counting.model import Successor, VersionedTree, VersionOf, Window, own_values
from tests.counting.trees import CUT, GRACE, Transfer, Version, hanoi_2025, write_tree
from tiendo import counting
from tiendo.counting import batch
from tiendo.counting.carry import allocate
from tiendo.event import Event, Kind

CCCD = "cccd_collected"
START = CUT - timedelta(days=10)
DEADLINE = CUT + timedelta(days=20)
HOUR = timedelta(hours=1)


# -- the allocation: one rule, SQL and Python -------------------------------------------
shares_st = st.lists(st.integers(1, 1000), min_size=1, max_size=7).map(
    lambda ws: [Fraction(w, sum(ws)) for w in ws]
)


@given(st.integers(-(10**9), 10**9), shares_st)
def test_allocation_sums_exactly_and_stays_within_one_of_each_quota(
    total: int, shares: list[Fraction]
) -> None:
    parts = allocate(total, shares)
    assert sum(parts) == total
    for part, share in zip(parts, shares, strict=True):
        assert abs(part - total * share) < 1


def test_allocation_ties_go_to_the_earlier_successor() -> None:
    assert allocate(1, [Fraction(1, 2), Fraction(1, 2)]) == [1, 0]
    assert allocate(2, [Fraction(1, 3)] * 3) == [1, 1, 0]
    assert allocate(10, [Decimal("0.6"), Decimal("0.4")]) == [6, 4]
    assert allocate(7, [Decimal("0.6"), Decimal("0.4")]) == [4, 3]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-(10**12), 10**12), shares_st), min_size=1, max_size=40))
def test_sql_allocation_equals_the_python_twin(
    postgres: PostgresServer, template_db: str, cases: list[tuple[int, list[Fraction]]]
) -> None:
    async def in_sql() -> list[list[int]]:
        conn = await asyncpg.connect(postgres.dsn(template_db))
        try:
            return [
                list(
                    await conn.fetchval(
                        "SELECT aggregator_read.allocate($1, $2::numeric[])",
                        total,
                        # decimal shares as an operator types them, 20 digits
                        [Decimal(s.numerator) / Decimal(s.denominator) for s in shares],
                    )
                )
                for total, shares in cases
            ]
        finally:
            await conn.close()

    got = asyncio.run(in_sql())
    want = [
        allocate(total, [Decimal(s.numerator) / Decimal(s.denominator) for s in shares])
        for total, shares in cases
    ]
    assert got == want


# -- a campaign across the 1 July 2025 cut-over ------------------------------------------
def versioned(versions: list[Version], transfers: list[Transfer]) -> VersionedTree:
    """The model's form of a tree written by `write_tree`."""
    return VersionedTree(
        {
            v.key: VersionOf(
                v.parent, v.admin_code or v.key, v.valid_from, v.valid_to, v.grace_until
            )
            for v in versions
        },
        {
            old: [
                Successor(t.new, Fraction(t.share) if t.share is not None else None, t.whole)
                for t in transfers
                if t.old == old
            ]
            for old in {t.old for t in transfers}
        },
    )


def model_tree(shares: bool) -> VersionedTree:
    return versioned(*hanoi_2025(shares=shares))


# on the tree in force at the start
TARGETS = [
    TargetIn(unit="00004", indicator=CCCD, target=100, baseline=7),
    TargetIn(unit="00005", indicator=CCCD, target=200, baseline=0),
    TargetIn(unit="00006", indicator=CCCD, target=101, baseline=13),
    TargetIn(unit="00008", indicator=CCCD, target=50, baseline=0),
]


async def world(
    dsn: str, *, shares: bool = True, targets: list[TargetIn] = TARGETS
) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    versions, transfers = hanoi_2025(shares=shares)
    async with conn.transaction():
        await write_tree(conn, versions, transfers)
        await admin.upsert_campaign(
            conn,
            "c1",
            CampaignIn(name="đợt 7/2025", starts_at=START, deadline=DEADLINE, indicators=[CCCD]),
            "test",
        )
        await admin.upsert_targets(conn, "c1", targets, "test")
    return conn


@pytest.fixture
async def hanoi(database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await world(database)
    yield conn
    await conn.close()


def e(event_id: str, code: str, at: datetime, value: int = 1, kind: Kind = Kind.INCREMENT) -> Event:
    return Event(event_id, code, CCCD, kind, value, at)


def history() -> list[Event]:
    """Snapshots and increments on both sides of the cut-over, on old and new codes."""
    return [
        e("a1", "00004", CUT - 5 * 24 * HOUR, 4),
        e("a-snap", "00004", CUT - 3 * 24 * HOUR, 30, Kind.SNAPSHOT),
        e("a2", "00004", CUT - 2 * 24 * HOUR, 5),
        e("b1", "00005", CUT - 4 * 24 * HOUR, 11),
        e("c1", "00006", CUT - 6 * 24 * HOUR, 9),
        e("c-snap", "00006", CUT - 24 * HOUR, 41, Kind.SNAPSHOT),
        e("c2", "00006", CUT - HOUR, 2),
        e("d1-own", "D1", CUT - 2 * HOUR, 6),
        e("bt1", "00008", CUT - 2 * 24 * HOUR, 3),
        # after the cut-over: the reused code is Ba Đình, the retired ones in their grace
        e("bd1", "00004", CUT + HOUR, 100),
        e("bd2", "00005", CUT + 2 * HOUR, 10),
        e("x1", "X", CUT + 3 * HOUR, 20),
        e("y-snap", "Y", CUT + 4 * HOUR, 70, Kind.SNAPSHOT),
        e("bt2", "00008", CUT + 5 * HOUR, 1),
    ]


def late() -> list[Event]:
    """Reports of the old period arriving after the campaign moved to the new tree."""
    return [
        e("a-late", "00004", CUT - 30 * 60 * timedelta(seconds=1), 3),
        e("c-late", "00006", CUT - 2 * HOUR, 5),
        e("c-late-snap", "00006", CUT - 36 * HOUR, 50, Kind.SNAPSHOT),  # older than c-snap
        e("c-late2", "00006", CUT - 30 * timedelta(seconds=1), 4),
    ]


def attributed(tree: VersionedTree, events: list[Event]) -> list[Event]:
    out = []
    for x in events:
        key = tree.attribute(x.unit, x.occurred_at)
        assert isinstance(key, str), key
        out.append(replace(x, unit=key))
    return out


def expected(
    tree: VersionedTree, events: list[Event], at: datetime, tree_at: datetime | None = None
) -> dict[tuple[str, str], int]:
    baselines = {("00004", CCCD): 7, ("00006", CCCD): 13}
    own = own_values(attributed(tree, events), Window(START, DEADLINE), baselines, at)
    moment = tree.moment(max(START, min(tree_at or at, DEADLINE)))
    return tree.rolled_up(own, moment, [CCCD])


async def live(conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
    rows = await conn.fetch(
        "SELECT p.unit, p.indicator, p.value FROM progress p JOIN units u ON u.code = p.unit"
        " JOIN campaigns c ON c.id = p.campaign_id"
        " WHERE p.campaign_id = 'c1' AND u.valid_from <= c.tree_at"
        " AND c.tree_at < coalesce(u.valid_to, 'infinity')"
    )
    return {(r["unit"], r["indicator"]): r["value"] for r in rows}


async def history_values(
    conn: asyncpg.Connection, at: datetime, tree_at: datetime | None = None
) -> dict[tuple[str, str], int]:
    codes = [r["code"] for r in await conn.fetch("SELECT code FROM units")]
    found = await counting.as_of(conn, "c1", [CCCD], codes, START, at, tree_at=tree_at)
    return {(root, ind): v.value for (ind, root), v in found.items()}


async def assert_live_equals_as_of_now(
    conn: asyncpg.Connection, start: datetime = START, deadline: datetime = DEADLINE
) -> None:
    """Every progress row (closed versions too: they show nothing) equals `as_of` now."""
    rows = await conn.fetch(
        "SELECT unit, value, last_event_at FROM progress WHERE campaign_id = 'c1'"
    )
    codes = [r["unit"] for r in rows]
    found = await counting.as_of(conn, "c1", [CCCD], codes, start, deadline)
    history = {root: (v.value, v.last_event_at) for (_, root), v in found.items()}
    assert {r["unit"]: (r["value"], r["last_event_at"]) for r in rows} == {
        u: history.get(u, (0, None)) for u in codes
    }


async def test_an_event_lands_in_the_version_its_code_meant_when_it_happened(
    hanoi: asyncpg.Connection,
) -> None:
    conn = hanoi
    events = [
        e("before", "00004", CUT - HOUR),  # Trúc Bạch
        e("after", "00004", CUT + HOUR),  # Ba Đình: the code reused
        e("retired", "00005", CUT + HOUR),  # went whole into Ba Đình, in its grace
        e("at-cut", "00004", CUT),  # the cut-over moment is the new version's
        e("kept-late", "00005", CUT - HOUR),  # before its cut-over: itself, whenever it comes
    ]
    await counting.apply_events(conn, events)
    rows = await conn.fetch("SELECT event_id, unit, sent_unit FROM events ORDER BY event_id")
    assert [tuple(r) for r in rows] == [
        ("after", "00004@2025-07-01", "00004"),
        ("at-cut", "00004@2025-07-01", "00004"),
        ("before", "00004", None),
        ("kept-late", "00005", None),
        ("retired", "00004@2025-07-01", "00005"),
    ]

    refused = [
        e("split", "00006", CUT + HOUR),  # split: no single successor to count it for
        e("past-grace", "00005", GRACE + HOUR),
        e("not-yet", "X", CUT - HOUR),  # X did not exist before the cut-over
        e("unknown", "99999", CUT + HOUR),
    ]
    await counting.prepare(conn)
    async with conn.transaction():
        await counting.stage(conn, [batch.staging_row(x, 0, i) for i, x in enumerate(refused)])
        taken = {u.event_id: u.reason for u in await counting.take_unappliable(conn)}
        assert await conn.fetchval("SELECT count(*) FROM batch_in") == 0
    assert taken == {
        "split": "unit 00006 was split on 2025-07-01 into X, Y; send the unit where it happened",
        "past-grace": "unknown unit 00005",
        "not-yet": "unknown unit X",
        "unknown": "unknown unit 99999",
    }
    # and the dead-letters metric tells them apart by these reasons
    kinds = {i: dead_letter_kind(DeadLetter(0, 0, i, reason, b"")) for i, reason in taken.items()}
    assert kinds == {
        "split": "split_unit",
        "past-grace": "unknown_unit",
        "not-yet": "unknown_unit",
        "unknown": "unknown_unit",
    }


async def test_whole_and_shared_transfers_carry_history_exactly(
    hanoi: asyncpg.Connection,
) -> None:
    conn = hanoi
    tree = model_tree(shares=True)
    await counting.apply_events(conn, history())
    # the campaign ended after the cut-over: it reports on the new tree
    assert await conn.fetchval("SELECT tree_at FROM campaigns WHERE id = 'c1'") == CUT
    await counting.apply_events(conn, late())
    events = history() + late()
    want = expected(tree, events, DEADLINE)
    assert await live(conn) == want
    assert await history_values(conn, DEADLINE) == want
    await assert_live_equals_as_of_now(conn)

    # to the unit: C's own (its latest snapshot, 41, plus the 2, 5 and 4 after it, plus
    # nothing before) is 52, split 0.6 / 0.4 by largest remainder: 31 and 21
    assert allocate(41 + 2 + 5 + 4, [Decimal("0.6"), Decimal("0.4")]) == [31, 21]
    assert want["X", CCCD] == 31 + 20
    assert want["Y", CCCD] == 21 + 70
    # A (snapshot 30, then 5 and 3) and B (11) whole into Ba Đình, with its own 100 + 10
    assert want["00004@2025-07-01", CCCD] == 30 + 5 + 3 + 11 + 100 + 10
    # nothing dropped or doubled: the new tree's total is the old total plus the new events
    old_total = expected(tree, events, CUT - timedelta(microseconds=1))["01", CCCD]
    assert old_total == (30 + 5 + 3) + 11 + 52 + 6 + 3
    assert want["01", CCCD] == old_total + 100 + 10 + 20 + 70 + 1

    # a recount from the stored events (rebuild, admin change) ends the same
    async with conn.transaction():
        await conn.execute(batch.LOCK_REPLAN)
        await admin.replan(conn, "c1", recount=True)
    assert await live(conn) == want
    await assert_live_equals_as_of_now(conn)


async def test_a_split_without_shares_shows_its_history_at_the_lowest_common_unit(
    database: str,
) -> None:
    conn = await world(database, shares=False)
    try:
        tree = model_tree(shares=False)
        await counting.apply_events(conn, history() + late())
        want = expected(tree, history() + late(), DEADLINE)
        assert await live(conn) == want
        await assert_live_equals_as_of_now(conn)
        # C's 52 and D1's own 6 are nobody's child's: "unallocated from split units"
        assert want["X", CCCD] == 20
        assert want["Y", CCCD] == 70
        children = sum(v for (u, _), v in want.items() if u != "01")
        assert want["01", CCCD] - children == 52 + 6
    finally:
        await conn.close()


async def test_as_of_reads_the_old_tree_before_the_cutover_and_the_new_one_after(
    hanoi: asyncpg.Connection,
) -> None:
    conn = hanoi
    tree = model_tree(shares=True)
    await counting.apply_events(conn, history() + late())
    events = history() + late()
    before = await history_values(conn, CUT - timedelta(seconds=1))
    assert before == expected(tree, events, CUT - timedelta(seconds=1))
    assert {u for u, _ in before} == {"01", "D1", "D2", "00004", "00005", "00006", "00008"}
    assert before["D1", CCCD] == 6 + (30 + 5 + 3) + 11 + 52
    after = await history_values(conn, CUT + 4 * HOUR)
    assert after == expected(tree, events, CUT + 4 * HOUR)
    assert {u for u, _ in after} == {"01", "00004@2025-07-01", "X", "Y", "00008@2025-07-01"}
    # one moment's figures on another moment's tree (a comparison across the cut-over)
    old_on_new = await history_values(conn, CUT - timedelta(seconds=1), tree_at=CUT)
    assert old_on_new == expected(tree, events, CUT - timedelta(seconds=1), tree_at=CUT)
    assert old_on_new["01", CCCD] == before["01", CCCD]


async def test_a_cutover_passing_a_campaign_moves_its_live_counters_onto_the_new_tree(
    hanoi: asyncpg.Connection,
) -> None:
    conn = hanoi
    tree = model_tree(shares=True)
    # planned while the old tree was in force
    async with conn.transaction():
        await cutover.after_tree_change(conn, now=CUT - 24 * HOUR)
    assert await conn.fetchval("SELECT tree_at = '-infinity' FROM campaigns")
    await counting.apply_events(conn, history())
    on_old_tree = expected(tree, history(), DEADLINE, tree_at=CUT - HOUR)
    assert await live(conn) == on_old_tree
    assert await history_values(conn, DEADLINE, tree_at=CUT - HOUR) == on_old_tree
    # the old tree's units are judged until the cut-over
    targeted = {r["unit"] for r in await conn.fetch("SELECT unit FROM progress WHERE target > 0")}
    assert targeted == {"01", "D1", "D2", "00004", "00005", "00006", "00008"}

    async with conn.transaction():
        assert await cutover.replan_passed(conn, CUT - HOUR) == []
    async with conn.transaction():
        assert await cutover.replan_passed(conn, CUT + HOUR) == ["c1"]
    assert await conn.fetchval("SELECT tree_at FROM campaigns") == CUT
    await counting.apply_events(conn, late())
    want = expected(tree, history() + late(), DEADLINE)
    assert await live(conn) == want
    await assert_live_equals_as_of_now(conn)
    # targets carried like figures: Ba Đình gets A's and B's, X and Y C's by shares
    rows = await conn.fetch("SELECT unit, target, baseline FROM progress WHERE target > 0")
    assert {r["unit"]: (r["target"], r["baseline"]) for r in rows} == {
        "01": (100 + 200 + 101 + 50, 7 + 13),
        "00004@2025-07-01": (300, 7),
        "X": (61, 8),  # 101 and 13 by 0.6 / 0.4: 60.6 → 61, 7.8 → 8
        "Y": (40, 5),
        "00008@2025-07-01": (50, 0),
    }


# -- a chain of cut-overs: 2023 wards → January 2025 → July 2025 --------------------------
JAN = datetime(2024, 12, 31, 17, 0, tzinfo=UTC)  # 1 January 2025 in Hà Nội


def chain() -> tuple[list[Version], list[Transfer]]:
    """A split by shares whose parts merge again, a rename split by shares later, and a
    split without shares: 01 → A, B, C until January; 01 → P, Q (A halved), B@2025-01-01
    (B renamed), C until July; 01 → M (P, Q whole, a third of B's), N (two thirds) after."""
    versions = [
        Version("01", "Thành phố", 1, None),
        Version("A", "Phường A", 2, "01", valid_to=JAN),
        Version("B", "Phường B", 2, "01", valid_to=JAN),
        Version("C", "Phường C", 2, "01", valid_to=CUT),
        Version("P", "Phường P", 2, "01", valid_from=JAN, valid_to=CUT),
        Version("Q", "Phường Q", 2, "01", valid_from=JAN, valid_to=CUT),
        Version("B@2025-01-01", "Phường B mới", 2, "01", JAN, CUT, admin_code="B"),
        Version("M", "Phường M", 2, "01", valid_from=CUT),
        Version("N", "Phường N", 2, "01", valid_from=CUT),
    ]
    transfers = [
        Transfer("A", "P", Decimal("0.5")),
        Transfer("A", "Q", Decimal("0.5")),
        Transfer("B", "B@2025-01-01", whole=True),
        Transfer("P", "M", whole=True),
        Transfer("Q", "M", whole=True),
        Transfer("B@2025-01-01", "M", Decimal(1) / Decimal(3)),
        Transfer("B@2025-01-01", "N", Decimal(2) / Decimal(3)),
        Transfer("C", "M"),
        Transfer("C", "N"),
    ]
    return versions, transfers


async def test_a_chain_of_cutovers_carries_each_total_before_splitting_it(database: str) -> None:
    versions, transfers = chain()
    tree = versioned(versions, transfers)
    start, deadline = JAN - 10 * 24 * HOUR, CUT + 10 * 24 * HOUR
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            await write_tree(conn, versions, transfers)
            await admin.upsert_campaign(
                conn,
                "c1",
                CampaignIn(name="c", starts_at=start, deadline=deadline, indicators=[CCCD]),
                "test",
            )
            await admin.upsert_targets(
                conn, "c1", [TargetIn(unit="A", indicator=CCCD, target=10, baseline=3)], "test"
            )
        events = [
            e("a1", "A", JAN - 5 * 24 * HOUR, 7),
            e("a2", "A", JAN - 4 * 24 * HOUR, 1),
            e("b1", "B", JAN - 3 * 24 * HOUR, 5),
            e("c1", "C", JAN - 2 * 24 * HOUR, 4),
            e("p1", "P", JAN + 24 * HOUR, 2),
            e("b2", "B", JAN + 24 * HOUR, 2),  # the renamed B
            e("q-snap", "Q", JAN + 2 * 24 * HOUR, 9, Kind.SNAPSHOT),
            e("c2", "C", CUT - 24 * HOUR, 3),
            e("m1", "M", CUT + 24 * HOUR, 1),
            e("n1", "N", CUT + 24 * HOUR, 6),
        ]
        # in reverse: the new tree's first, the 2023 ones last
        for x in reversed(events):
            await counting.apply_events(conn, [x])
        keyed = attributed(tree, events)
        assert [x.unit for x in keyed][5] == "B@2025-01-01"
        own = own_values(keyed, Window(start, deadline), {("A", CCCD): 3}, deadline)
        for at in (JAN - HOUR, JAN + 3 * 24 * HOUR, deadline):
            want = tree.rolled_up(
                own_values(keyed, Window(start, deadline), {("A", CCCD): 3}, at),
                tree.moment(at),
                [CCCD],
            )
            codes = [v.key for v in versions]
            found = await counting.as_of(conn, "c1", [CCCD], codes, start, at)
            assert {(root, i): v.value for (i, root), v in found.items()} == want, at
        want = tree.rolled_up(own, CUT, [CCCD])
        # A's 11 halved (6, 5) into P (2 more) and Q (its snapshot, 9, covers it: Q's own
        # is 9 + 5), all into M; B's 5 + 2 by thirds (2, 5); C's 7 unallocated at 01
        assert want["M", CCCD] == (6 + 2) + (9 + 5) + 2 + 1
        assert want["N", CCCD] == 5 + 6
        assert want["01", CCCD] == want["M", CCCD] + want["N", CCCD] + 7
        assert await live(conn) == want
        await assert_live_equals_as_of_now(conn, start, deadline)
    finally:
        await conn.close()
