"""A stored event_id sent again with other content (issue 16): the first applied stays
counted, the later one is returned as a conflict to dead-letter, an identical one is
counted on the stored event as a duplicate — for any sequence of batches, on the real
database, the counters equal the reference model (`tests/counting/model.py`, whose
`counted` keeps the first delivery of each id)."""

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from devtools.localstack import PostgresServer
from tests.counting.model import Window, own_values
from tests.support.databases import clone_database
from tests.support.world import TREE, build_world
from tiendo.counting import apply_events
from tiendo.counting.content import content_hash
from tiendo.event import Event, Kind
from tiendo.rollup import subtree_sums

START = datetime(2023, 5, 10, tzinfo=UTC)
NOW = START + timedelta(days=5)
PARENTS = {u.code: u.parent_code for u in TREE}


def version(event_id: str, n: int) -> Event:
    """Version `n` of an event: each differs in a field that moves a counter."""
    at = START + timedelta(hours=1 + n)
    unit = ("00004", "00007", "00010")[n % 3]
    if n == 3:
        return Event(event_id, unit, "cccd_collected", Kind.SNAPSHOT, 40, at)
    if n == 4:
        return Event(event_id, unit, "cccd_collected", Kind.INCREMENT, 1, at, "ab" * 32)
    return Event(event_id, unit, "cccd_collected", Kind.INCREMENT, 1 + n, at)


deliveries = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 4)), min_size=1, max_size=16
)


async def _apply_in_order(dsn: str, sent: list[Event], cuts: random.Random) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        stored: dict[str, Event] = {}
        batch: list[Event] = []
        pending = list(sent)
        while pending or batch:
            # batches of distinct ids, cut at random (as the consumer fetches them)
            if pending and pending[0].event_id not in {e.event_id for e in batch}:
                batch.append(pending.pop(0))
                if pending and cuts.random() < 0.7:
                    continue
            outcome = await apply_events(conn, batch)
            expected = [
                e.event_id
                for e in batch
                if e.event_id in stored and content_hash(e) != content_hash(stored[e.event_id])
            ]
            assert sorted(c.event_id for c in outcome.conflicts) == sorted(expected)
            assert {c.reason for c in outcome.conflicts} <= {"conflict"}
            for e in batch:
                stored.setdefault(e.event_id, e)
            batch = []
        rows = await conn.fetch("SELECT event_id, value, unit, duplicates FROM events")
        assert {r["event_id"]: (r["value"], r["unit"]) for r in rows} == {
            i: (e.value, e.unit) for i, e in stored.items()
        }
        identical = {
            i: sum(1 for e in sent if e.event_id == i and content_hash(e) == content_hash(first))
            - 1
            for i, first in stored.items()
        }
        assert {r["event_id"]: r["duplicates"] for r in rows} == identical
        own = own_values(sent, Window(START, START + timedelta(days=50)), {}, NOW)
        expected_values = subtree_sums(PARENTS, {u: v for (u, _), v in own.items()})
        got = await conn.fetch("SELECT unit, value FROM progress WHERE campaign_id = 'c1'")
        assert {r["unit"]: r["value"] for r in got if r["value"]} == {
            u: v for u, v in expected_values.items() if v
        }
    finally:
        await conn.close()


@settings(
    max_examples=25,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(deliveries, st.randoms(use_true_random=False))
def test_the_first_applied_stays_and_later_other_content_is_a_conflict(
    postgres: PostgresServer, template_db: str, sent: list[tuple[str, int]], cuts: random.Random
) -> None:
    name = f"p_{uuid.uuid4().hex[:12]}"

    async def scenario() -> None:
        admin = await asyncpg.connect(postgres.dsn())
        try:
            await clone_database(admin, template_db, name)
            await build_world(postgres.dsn(name), starts_at=START)
            await _apply_in_order(postgres.dsn(name), [version(i, n) for i, n in sent], cuts)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

    asyncio.run(scenario())
