"""The one-state promise under random interleavings (issue 11): events, admin changes
(new campaign, new targets, a moved deadline, milestones, thresholds), notifier restarts
and briefing moments, in any order. After every step and the notifier's next pass, in one
snapshot of the database: live = as_of now for every key; every open alert is the board's
condition with the board's figures and every condition has its alert; `bottom_rank` is
the leaderboard's bottom N as of the briefing (`tiendo check`'s comparisons)."""

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from devtools.localstack import PostgresServer
from services.aggregator import admin
from services.aggregator.admin import CampaignIn, MilestoneIn, TargetIn
from services.check.run import check_round
from services.notifier.evaluator import Evaluator
from services.notifier.render import Renderer
from services.notifier.settings import NotifierSettings
from tests.support.databases import clone_database
from tests.support.world import TREE, WARDS
from tiendo.counting import apply_events
from tiendo.database import create_pool
from tiendo.event import Event, Kind

START = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)  # a Wednesday; briefings on Mondays
INDICATORS = ("cccd_collected", "eid_activated_l2")
UNITS = [u.code for u in TREE]

step = st.one_of(
    st.tuples(st.just("events"), st.integers(0, 2**32)),
    st.tuples(st.just("new_campaign"), st.integers(0, 2**32)),
    st.tuples(st.just("targets"), st.integers(0, 2**32)),
    st.tuples(st.just("window"), st.integers(0, 2**32)),
    st.tuples(st.just("advance"), st.integers(1, 80)),  # hours: briefings pass by
    st.tuples(st.just("restart_notifier"), st.just(0)),
)


async def _events(conn: asyncpg.Connection, rng: random.Random, now: datetime) -> None:
    events = []
    for _ in range(rng.randint(5, 40)):
        unit = rng.choice([*WARDS, *WARDS, "001", "002"])
        indicator = rng.choice(INDICATORS)
        # some before the start or long ago, none ahead of the clock (ingest refuses those)
        at = now - timedelta(hours=rng.uniform(0, 24 * 14))
        if rng.random() < 0.2:
            kind, value, subject = Kind.SNAPSHOT, rng.randint(0, 600), None
        elif rng.random() < 0.3:
            # a small pool of citizens: repeats across units, earlier ones arriving late
            kind, value = Kind.INCREMENT, 1
            subject = f"{rng.randint(0, 15):064x}"
        else:
            kind, value, subject = Kind.INCREMENT, rng.randint(-3, 40) or 1, None
        events.append(
            Event(f"p-{uuid.uuid4().hex}", unit, indicator, kind, value, at, subject=subject)
        )
    await apply_events(conn, events)


async def _campaign(conn: asyncpg.Connection, rng: random.Random, cid: str, now: datetime) -> None:
    starts_at = now - timedelta(days=rng.uniform(0.5, 12))
    deadline = starts_at + timedelta(days=rng.uniform(5, 40))
    milestones = (
        [MilestoneIn(at=starts_at + (deadline - starts_at) / 3, fraction=rng.uniform(0, 0.6))]
        if rng.random() < 0.5
        else []
    )
    async with conn.transaction():
        await admin.upsert_campaign(
            conn,
            cid,
            CampaignIn(
                name=cid,
                starts_at=starts_at,
                deadline=deadline,
                indicators=rng.sample(INDICATORS, rng.randint(1, 2)),
                behind_threshold=rng.choice([0.5, 0.8, 0.9, 1.0]),
                stale_after_seconds=rng.choice([3600, 12 * 3600, 3 * 86400]),
                milestones=milestones,
            ),
            "property",
        )


async def _targets(conn: asyncpg.Connection, rng: random.Random, cid: str) -> None:
    row = await conn.fetchrow("SELECT indicators FROM campaigns WHERE id = $1", cid)
    assert row is not None
    targets = [
        TargetIn(
            unit=u,
            indicator=i,
            target=rng.choice([0, 50, 300, 1000]),
            baseline=rng.choice([0, 0, 20]),
        )
        for u in rng.sample(WARDS, rng.randint(1, len(WARDS)))
        for i in row["indicators"]
    ]
    async with conn.transaction():
        await admin.upsert_targets(conn, cid, targets, "property")


async def _scenario(dsn: str, steps: list[tuple[str, int]]) -> None:
    now = START + timedelta(days=10)
    settings_ = NotifierSettings(
        database_url=dsn, bottom_rank_n=2, bottom_rank_level=3, digest_times=""
    )
    pool = await create_pool(dsn, max_size=4)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await admin.upsert_units(conn, TREE, "property")
        campaigns: list[str] = []
        evaluator = Evaluator(settings_, Renderer(), ())
        for kind, arg in steps:
            rng = random.Random(arg)
            if kind == "events":
                await _events(conn, rng, now)
            elif kind == "new_campaign" or not campaigns:
                cid = f"c{len(campaigns) + 1}"
                await _campaign(conn, rng, cid, now)
                campaigns.append(cid)
                await _targets(conn, rng, cid)
            elif kind == "targets":
                await _targets(conn, rng, rng.choice(campaigns))
            elif kind == "window":
                await _campaign(conn, rng, rng.choice(campaigns), now)
            elif kind == "advance":
                now += timedelta(hours=arg)
            else:
                evaluator = Evaluator(settings_, Renderer(), ())
            await evaluator.evaluate_at(pool, now)
            found = await check_round(conn, settings_, now)
            assert [str(d) for d in found.disagreements] == [], (steps, kind, arg, now)
    finally:
        await conn.close()
        await pool.close()


@pytest.mark.slow
@settings(
    max_examples=15,
    deadline=None,
    # each step is real database work: report the failing interleaving as generated
    # (its steps are in the assertion) rather than spend minutes shrinking it
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=4, max_size=12))
def test_every_figure_rank_and_alert_derives_from_one_state(
    postgres: PostgresServer, template_db: str, steps: list[tuple[str, int]]
) -> None:
    name = f"p_{uuid.uuid4().hex[:12]}"

    async def scenario() -> None:
        admin = await asyncpg.connect(postgres.dsn())
        try:
            await clone_database(admin, template_db, name)
        finally:
            await admin.close()
        await _scenario(postgres.dsn(name), steps)

    asyncio.run(scenario())
