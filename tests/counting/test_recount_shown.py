"""A recount in progress is shown as such, never as a wrong number (contract, semantics):
while `tiendo aggregator rebuild` replays the topic its counters hold part of the events,
and every figure read answers 503 saying how far it is. A rebuild killed midway leaves
the counters short: the reads keep saying so until the running aggregator, carrying on
from the offsets the rebuild stored, has caught up — also when new events reach it first —
and then read what a whole rebuild reads. A rebuild that ends leaves nothing behind."""

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator import consumer
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.rebuild import rebuild
from services.aggregator.settings import AggregatorSettings
from tests.support.identities import READER
from tests.support.stack import Topics, eventually, running
from tests.support.world import WARDS, build_world
from tiendo.board import repository as board
from tiendo.clock import ManualClock
from tiendo.event import Event, Kind, encode
from tiendo.kafka import reliable_producer

START = datetime.now(UTC) - timedelta(days=5)
EVENTS = 4000
# small batches make the replay long enough to be read, and killed, in the middle
BATCH = 25
LATER = 30


@pytest.fixture
def settings(database: str, kafka: KafkaBroker, topics: Topics) -> AggregatorSettings:
    return AggregatorSettings(
        database_url=database,
        kafka_bootstrap=kafka.bootstrap,
        group_id=f"agg-{topics.events}",
        batch_max_records=BATCH,
        **topics.kwargs(),
    )


def _events(now: datetime) -> list[Event]:
    """Increments, snapshots and subjects over three wards and four days: a partial replay
    of them reads as a lower value on every ward, a snapshot's or a subject's included."""
    out = []
    for i in range(EVENTS):
        unit = WARDS[i % 3]
        at = now - timedelta(hours=96 - (i * 7) % 95, seconds=i)
        if i % 97 == 0:
            out.append(Event(f"s{i}", unit, "cccd_collected", Kind.SNAPSHOT, 2 * i, at))
        elif i % 11 == 0:
            subject = f"{i % 300:064x}"
            out.append(
                Event(f"p{i}", unit, "cccd_collected", Kind.INCREMENT, 1, at, subject=subject)
            )
        else:
            out.append(Event(f"e{i}", unit, "cccd_collected", Kind.INCREMENT, 1 + i % 3, at))
    return out


def _rebuild_command(settings: AggregatorSettings, topics: Topics) -> subprocess.Popen[bytes]:
    """`tiendo aggregator rebuild` as an operator runs it, on this test's database/topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIENDO_")}
    env |= {
        "TIENDO_AGGREGATOR_DATABASE_URL": settings.database_url,
        "TIENDO_AGGREGATOR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TIENDO_AGGREGATOR_GROUP_ID": settings.group_id,
        "TIENDO_AGGREGATOR_BATCH_MAX_RECORDS": str(BATCH),
        **topics.env("TIENDO_AGGREGATOR_"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "aggregator", "rebuild", "--actor", "ops"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _figures(client: httpx.AsyncClient) -> list[httpx.Response]:
    return [
        await client.get("/v1/campaigns/c1/progress/01"),
        *[await client.get(f"/v1/campaigns/c1/progress/{w}") for w in WARDS],
        await client.get(
            "/v1/campaigns/c1/leaderboard", params={"level": 3, "indicator": "cccd_collected"}
        ),
        await client.get("/v1/campaigns/c1/progress/01", params={"as_of": START.isoformat()}),
    ]


def _values(responses: list[httpx.Response]) -> list[object]:
    for r in responses:
        assert r.status_code == 200, r.text
    return [r.json() for r in responses[:-2]] + [responses[-2].json()["rows"]]


@pytest.mark.slow
async def test_reads_say_a_recount_is_in_progress_until_it_has_caught_up(
    settings: AggregatorSettings,
    database: str,
    kafka: KafkaBroker,
    topics: Topics,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await build_world(database, starts_at=START, targets=dict.fromkeys(WARDS, 5000))
    producer = reliable_producer(kafka.bootstrap, client_id="test")
    await producer.start()
    conn = await asyncpg.connect(database)
    frozen = datetime.now(UTC)
    try:
        for e in _events(frozen):
            await producer.send(topics.events, encode(e), key=e.unit.encode())
        await producer.flush()
        # one moment for every read: the figures before and after compare whole
        clock = ManualClock(frozen)
        app = create_aggregator(settings.model_copy(update={"metrics_refresh_seconds": 0.2}), clock)
        async with running(app) as client:
            client.headers.update(READER)

            async def applied() -> None:
                assert await conn.fetchval("SELECT count(*) FROM events") == EVENTS

            await eventually(applied)
            before = _values(await _figures(client))
            assert await board.recount_in_progress(conn) is None

            rebuilding = _rebuild_command(settings, topics)
            try:

                async def midway() -> tuple[int, int]:
                    recounting = await board.recount_in_progress(conn)
                    assert recounting is not None
                    assert 0 < recounting.replayed < recounting.total // 2
                    return recounting.replayed, recounting.total

                await eventually(midway, timeout=90, every=0.02)
                during = await _figures(client)

                async def shown() -> None:
                    exported = (await client.get("/metrics")).text
                    assert "tiendo_aggregator_recount_in_progress 1.0" in exported

                await eventually(shown, timeout=10)
                # killed midway, as a crash or an operator's kill -9 would
                rebuilding.send_signal(signal.SIGKILL)
                rebuilding.wait(timeout=30)
            finally:
                if rebuilding.poll() is None:
                    rebuilding.kill()
            for r in during:
                assert r.status_code == 503, r.text
                assert r.headers["Retry-After"] == "30"
                problem = r.json()
                assert problem["type"].endswith("/recount-in-progress")
                assert "records replayed" in problem["detail"]
            # events sent after it: applied from the consumer's own position, they would
            # store offsets past the gap the rebuild left (the greatest is kept)
            later = [
                Event(f"l{i}", WARDS[i % 3], "cccd_collected", Kind.INCREMENT, 1, frozen)
                for i in range(LATER)
            ]
            for e in later:
                await producer.send(topics.events, encode(e), key=e.unit.encode())
            await producer.flush()
            # what the rebuild left: the counters short of the events, and said so
            left = await board.recount_in_progress(conn)
            if left is not None:
                assert left.replayed < left.total
                assert (await client.get("/v1/campaigns/c1/progress/01")).status_code == 503

            async def caught_up() -> list[object]:
                assert await board.recount_in_progress(conn) is None
                assert await conn.fetchval("SELECT count(*) FROM events") == EVENTS + LATER
                return _values(await _figures(client))

            # the aggregator, freed of the rebuild's lock, replays the rest itself
            after = await eventually(caught_up, timeout=120)
            assert after != before

            async def over() -> None:
                exported = (await client.get("/metrics")).text
                assert "tiendo_aggregator_recount_in_progress 0.0" in exported

            await eventually(over, timeout=10)

        # a rebuild that ends leaves no recount behind, and the same figures; an idle
        # aggregator beside it, looking for moved-back offsets all the while, does not
        # take the live rebuild's for a dead one's (no restart)
        monkeypatch.setattr(consumer, "MOVED_BACK_LOOK_SECONDS", 0.05)
        async with running(create_aggregator(settings, clock)) as c:
            c.headers.update(READER)
            done = await rebuild(settings, actor="ops")
            assert done.events == EVENTS + LATER
            assert await conn.fetchval("SELECT count(*) FROM recounts") == 0
            assert _values(await _figures(c)) == after
            restarts = 'tiendo_background_restarts_total{task="consumer"}'
            exported = (await c.get("/metrics")).text.splitlines()
            assert all(
                float(line.rsplit(" ", 1)[1]) == 0.0
                for line in exported
                if line.startswith(restarts + " ")
            )
    finally:
        await producer.stop()
        await conn.close()
