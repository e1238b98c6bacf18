"""Order independence across a cut-over: a campaign spanning 1 July 2025 gets events on old
and new codes (reused, retired in their grace, split, unknown), snapshots, increments and
citizens, in random batches with redeliveries, while its clock crosses the cut-over (its
live counters move onto the new tree when it does). After every step the live counters
equal `as_of` on the campaign's tree, and at the end both equal the reference model
(tests/counting/model.py: attribution, carrying and rollup stated once more in Python)."""

import asyncio
import random
import uuid
from datetime import datetime, timedelta

import asyncpg
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from devtools.localstack import PostgresServer
from services.aggregator import cutover
from tests.counting.model import Refused
from tests.counting.test_cutover import (
    CCCD,
    DEADLINE,
    START,
    expected,
    model_tree,
    world,
)
from tests.counting.trees import CUT
from tests.support.databases import clone_database
from tiendo import counting
from tiendo.counting import batch
from tiendo.event import Event, Kind

CODES = ("00004", "00005", "00006", "00008", "D1", "X", "Y", "01", "99999")
SUBJECTS = tuple(f"{i:064x}" for i in range(5))

step = st.one_of(
    st.tuples(st.just("events"), st.integers(0, 2**32)),
    st.tuples(st.just("clock"), st.integers(1, 24 * 6)),  # hours pass
)


def _events(rng: random.Random, n: int, first: int) -> list[Event]:
    out = []
    for i in range(first, first + n):
        # coarse times, so that ties happen, on both sides of the cut-over and its edges
        at = CUT + timedelta(hours=rng.randrange(-14 * 24, 24 * 24, 6))
        if rng.random() < 0.1:
            at = CUT
        code = rng.choice(CODES)
        roll = rng.random()
        if roll < 0.2:
            kind, value, subject = Kind.SNAPSHOT, rng.randint(0, 90), None
        elif roll < 0.45:
            kind, value, subject = Kind.INCREMENT, 1, rng.choice(SUBJECTS)
        else:
            kind, value, subject = Kind.INCREMENT, rng.choice([1, 2, 3, 7, -1]), None
        out.append(Event(f"e{i}", code, CCCD, kind, value, at, subject=subject))
    return out


async def _apply(conn: asyncpg.Connection, events: list[Event]) -> set[str]:
    """One consumed batch: attribution, dead letters, apply; the refused event_ids."""
    await counting.prepare(conn)
    async with conn.transaction():
        await counting.lock_apply(conn)
        await counting.stage(conn, [batch.staging_row(x, 0, i) for i, x in enumerate(events)])
        refused = {u.event_id for u in await counting.take_unappliable(conn)}
        await counting.apply(conn)
    return refused


async def _live_equals_as_of(conn: asyncpg.Connection, tree_at: datetime) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT unit, value, last_event_at FROM progress WHERE campaign_id = 'c1'"
    )
    codes = [r["unit"] for r in rows]
    found = await counting.as_of(conn, "c1", [CCCD], codes, START, DEADLINE, tree_at=tree_at)
    history = {root: (v.value, v.last_event_at) for (_, root), v in found.items()}
    live = {r["unit"]: (r["value"], r["last_event_at"]) for r in rows}
    assert live == {u: history.get(u, (0, None)) for u in codes}
    return {u: v for u, (v, _) in live.items() if u in history}


async def _scenario(dsn: str, shares: bool, steps: list[tuple[str, int]]) -> None:
    tree = model_tree(shares)
    conn = await world(dsn, shares=shares)
    try:
        now = CUT - timedelta(days=3)
        async with conn.transaction():
            await cutover.after_tree_change(conn, now)
        sent: list[Event] = []
        applied: dict[str, Event] = {}
        for kind, arg in steps:
            rng = random.Random(arg)
            if kind == "clock":
                now += timedelta(hours=arg)
                async with conn.transaction():
                    await cutover.replan_passed(conn, now)
            else:
                fresh = _events(rng, rng.randint(1, 25), len(sent))
                again = rng.sample(sent, min(len(sent), rng.randint(0, 5)))
                sent += fresh
                deliveries = fresh + again
                rng.shuffle(deliveries)
                refused = await _apply(conn, deliveries)
                # a refused event is never stored: redelivered, it is refused again
                want_refused = {
                    x.event_id
                    for x in deliveries
                    if isinstance(tree.attribute(x.unit, x.occurred_at), Refused)
                }
                assert refused == want_refused, steps
                applied.update({x.event_id: x for x in fresh if x.event_id not in refused})
            moment = max(START, min(now, DEADLINE))
            live = await _live_equals_as_of(conn, moment)
        want = expected(tree, list(applied.values()), DEADLINE, tree_at=moment)
        assert {(u, CCCD): v for u, v in live.items()} == want, steps
    finally:
        await conn.close()


@settings(
    max_examples=12,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(shares=st.booleans(), steps=st.lists(step, min_size=2, max_size=10))
def test_a_campaign_across_a_cutover_counts_alike_in_any_order(
    postgres: PostgresServer, template_db: str, shares: bool, steps: list[tuple[str, int]]
) -> None:
    name = f"p_{uuid.uuid4().hex[:12]}"

    async def scenario() -> None:
        admin = await asyncpg.connect(postgres.dsn())
        try:
            await clone_database(admin, template_db, name)
            await _scenario(postgres.dsn(name), shares, steps)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

    asyncio.run(scenario())
