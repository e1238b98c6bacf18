"""Order independence end to end (contract §5): a generated campaign of 200,000 events, sent
in shuffled order with 5 % duplicates through the real ingest, Kafka and aggregator, with
the aggregator SIGKILLed several times, ends with every counter equal to an independent
recomputation (tests/counting/model.py, from scratch)."""

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator.admin import UnitIn
from services.check.run import check_round
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.notifier.settings import NotifierSettings
from tests.counting.model import Window, own_values, rolled_up
from tests.support.stack import (
    Topics,
    aggregator_process,
    eventually,
    running,
    until_ready,
)
from tests.support.world import build_world, issue_token
from tiendo.event import Event, Kind, to_json

EVENTS = 200_000
START = datetime.now(UTC) - timedelta(days=30)
DEADLINE = START + timedelta(days=40)
INDICATORS = ("cccd_collected", "eid_activated_l2")


def tree() -> list[UnitIn]:
    """A 4-level tree: city, 4 districts, 5 wards each, 3 residential groups per ward."""
    units = [UnitIn(code="01", name="Thành phố", level=1)]
    for d in range(4):
        district = f"D{d}"
        units.append(UnitIn(code=district, name=f"Quận {d}", level=2, parent_code="01"))
        for w in range(5):
            ward = f"{district}W{w}"
            units.append(UnitIn(code=ward, name=f"Phường {d}.{w}", level=3, parent_code=district))
            units.extend(
                UnitIn(code=f"{ward}G{g}", name=f"Tổ {g}", level=4, parent_code=ward)
                for g in range(3)
            )
    return units


def generate(units: list[UnitIn], rng: random.Random) -> list[Event]:
    leaves = [u.code for u in units if u.level >= 3]
    subjects = [f"{rng.getrandbits(256):064x}" for _ in range(20_000)]
    horizon = int(
        (datetime.now(UTC) - timedelta(hours=1) - (START - timedelta(days=2))).total_seconds()
    )
    out = []
    for i in range(EVENTS):
        at = START - timedelta(days=2) + timedelta(seconds=rng.randrange(horizon))
        unit = rng.choice(leaves)
        indicator = rng.choice(INDICATORS)
        roll = rng.random()
        if roll < 0.03:
            out.append(Event(f"s{i}", unit, indicator, Kind.SNAPSHOT, rng.randrange(0, 400), at))
        elif roll < 0.35:
            out.append(
                Event(f"c{i}", unit, indicator, Kind.INCREMENT, 1, at, subject=rng.choice(subjects))
            )
        else:
            value = rng.choice([1, 1, 1, 2, 3, 5, -1])
            out.append(Event(f"i{i}", unit, indicator, Kind.INCREMENT, value, at))
    return out


@pytest.mark.slow
@pytest.mark.timeout(1500)
async def test_shuffled_duplicated_campaign_with_crashes_matches_recomputation(
    database: str, kafka: KafkaBroker, topics: Topics, tmp_path: Path
) -> None:
    rng = random.Random(20230601)
    units = tree()
    baselines = {u.code: rng.randrange(0, 50) for u in units if u.level == 3}
    await build_world(
        database,
        starts_at=START,
        days=40,
        units=units,
        indicators=INDICATORS,
        targets={u.code: 5000 for u in units if u.level == 3},
    )
    conn = await asyncpg.connect(database)
    await conn.executemany(
        "UPDATE targets SET baseline = $2 WHERE campaign_id = 'c1' AND unit = $1",
        list(baselines.items()),
    )
    from services.aggregator.admin import replan

    async with conn.transaction():
        await replan(conn, "c1")
    token = await issue_token(database)

    events = generate(units, rng)
    deliveries = events + rng.sample(events, EVENTS // 20)
    rng.shuffle(deliveries)
    # unique ids per batch, so that every duplicate reaches the aggregator as a redelivery
    # (ingest would publish a repeat inside one batch once)
    batches: list[list[Event]] = []
    for e in deliveries:
        if (
            not batches
            or len(batches[-1]) == 1000
            or any(x.event_id == e.event_id for x in batches[-1])
        ):
            batches.append([])
        batches[-1].append(e)

    aggregator = aggregator_process(
        database, kafka.bootstrap, topics, tmp_path / "aggregator.log", metrics_refresh_seconds=600
    )

    async def applied() -> int:
        return int(await conn.fetchval("SELECT count(*) FROM events"))

    settings = IngestSettings(
        database_url=database, kafka_bootstrap=kafka.bootstrap, **topics.kwargs()
    )
    try:
        async with running(create_ingest(settings)) as ingest:
            await until_ready(ingest)
            aggregator.start()
            kills = 0
            for n, batch in enumerate(batches):
                r = await ingest.post(
                    "/v1/events",
                    json={"events": [to_json(e) for e in batch]},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 202, r.text
                if n and n % 50 == 0 and kills < 4:
                    before = await applied()

                    async def grown(b: int = before) -> None:
                        assert await applied() > b

                    await eventually(grown, timeout=120)
                    aggregator.kill()
                    kills += 1
                    aggregator.start()
        assert kills == 4

        async def caught_up() -> None:
            assert await applied() == EVENTS

        await eventually(caught_up, timeout=900, every=2.0)
        aggregator.kill()
        aggregator.start()  # a final replay after catching up must change nothing

        window = Window(START, DEADLINE)
        base = {(u, i): b for u, b in baselines.items() for i in INDICATORS}
        own = own_values(events, window, base, datetime.now(UTC))
        parents = {u.code: u.parent_code for u in units}
        expected = rolled_up(own, parents, INDICATORS)

        async def settled() -> None:
            rows = await conn.fetch(
                "SELECT unit, indicator, value FROM progress WHERE campaign_id = 'c1'"
            )
            got = {(r["unit"], r["indicator"]): r["value"] for r in rows}
            assert got == expected

        await eventually(settled, timeout=120, every=2.0)
        counted = await conn.fetchval("SELECT count(*) FROM events WHERE counted")
        from tests.counting.model import counted as counted_events

        assert counted == len(counted_events(events))
        # `tiendo check`: after the crashes, every live counter equals its history
        found = await check_round(
            conn, NotifierSettings(database_url=database), datetime.now(UTC), alerts=False
        )
        assert [str(d) for d in found.disagreements] == []
    finally:
        aggregator.stop()
        await conn.close()
