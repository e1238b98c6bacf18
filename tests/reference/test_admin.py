"""Admin through the API and the spreadsheet CLI: all or nothing, audited; dead letters
wait for their cause to be fixed and are then counted; a rebuild ends in the same state."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from devtools.localstack import KafkaBroker
from services.aggregator import deadletters
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.cli import import_file
from services.aggregator.rebuild import rebuild
from services.aggregator.settings import AggregatorSettings
from tests.support.identities import ADMIN_SECRET as ADMIN
from tests.support.identities import bearer
from tests.support.stack import Topics, eventually, running
from tests.support.world import build_world
from tiendo.event import Event, Kind, encode
from tiendo.kafka import reliable_producer

START = datetime.now(UTC) - timedelta(days=5)


@pytest.fixture
def settings(database: str, kafka: KafkaBroker, topics: Topics) -> AggregatorSettings:
    return AggregatorSettings(
        database_url=database,
        kafka_bootstrap=kafka.bootstrap,
        group_id=f"agg-{topics.events}",
        **topics.kwargs(),
    )


async def test_spreadsheet_import_is_all_or_nothing_and_audited(
    settings: AggregatorSettings, database: str, tmp_path: Path
) -> None:
    app = create_aggregator(settings.model_copy(update={"consume": False}))
    async with running(app) as client:
        client.headers.update(bearer(ADMIN))
        bad = tmp_path / "units.csv"
        bad.write_text(
            "code,name,level,parent_code\n01,Hà Nội,1,\n001,Ba Đình,2,01\n"
            "00004,Phúc Xá,three,001\n00007,,3,001\n",
            encoding="utf-8",
        )
        problems = await import_file(client, "units", bad, None, ADMIN)
        assert problems[:2] == [
            "line 4: level: Input should be a valid integer, unable to parse string as an integer",
            "line 5: name: Field required",
        ]
        assert problems[-1] == "2 problem(s); nothing was imported"
        assert (await client.get("/v1/units/01")).status_code == 404

        good = tmp_path / "units-fixed.csv"
        good.write_text(
            "code,name,level,parent_code,chief_email\n01,Hà Nội,1,,a@b.vn\n"
            "001,Ba Đình,2,01,\n00004,Phúc Xá,3,001,\n",
            encoding="utf-8",
        )
        assert await import_file(client, "units", good, None, "wrong-token") != []
        assert await import_file(client, "units", good, None, ADMIN) == []
        unit = (await client.get("/v1/units/00004")).json()
        assert [a["code"] for a in unit["ancestors"]] == ["01", "001"]

        r = await client.put(
            "/v1/campaigns/c9",
            headers={"Authorization": f"Bearer {ADMIN}"},
            json={
                "name": "c9",
                "starts_at": START.isoformat(),
                "deadline": (START + timedelta(days=30)).isoformat(),
                "indicators": ["cccd_collected"],
            },
        )
        assert r.status_code == 200, r.text
        targets = tmp_path / "targets.csv"
        targets.write_text(
            "unit,indicator,target\n00004,cccd_collected,500\n00099,cccd_collected,10\n",
            encoding="utf-8",
        )
        problems = await import_file(client, "targets", targets, "c9", ADMIN)
        assert "unknown unit 00099" in problems[0]
        assert problems[-1] == "nothing was imported"
        targets.write_text("unit,indicator,target\n00004,cccd_collected,500\n", encoding="utf-8")
        assert await import_file(client, "targets", targets, "c9", ADMIN) == []
        city = (await client.get("/v1/campaigns/c9/progress/01")).json()["indicators"][0]
        assert city["target"] == 500  # a parent's target is the sum of its children's
    conn = await asyncpg.connect(database)
    actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_log ORDER BY id")]
    await conn.close()
    assert actions == ["units.upsert", "campaign.upsert", "targets.upsert"]


async def test_event_for_a_deleted_unit_is_dead_lettered_then_redriven(
    settings: AggregatorSettings, database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=START)
    producer = reliable_producer(kafka.bootstrap, client_id="test")
    await producer.start()
    orphan = Event(
        "orphan-1",
        "00013",
        "cccd_collected",
        Kind.INCREMENT,
        4,
        datetime.now(UTC) - timedelta(hours=1),
        received_at=datetime.now(UTC),
    )
    conn = await asyncpg.connect(database)
    try:
        async with running(create_aggregator(settings)) as client:
            client.headers.update(bearer(ADMIN))
            await producer.send_and_wait(topics.events, encode(orphan), key=b"00013")
            await producer.send_and_wait(topics.events, b"\xff not protobuf", key=b"x")

            async def dead_lettered() -> None:
                metrics = (await client.get("/metrics")).text
                assert 'tiendo_aggregator_dead_letters_total{reason="unknown_unit"} 1.0' in metrics
                assert 'tiendo_aggregator_dead_letters_total{reason="undecodable"} 1.0' in metrics

            await eventually(dead_lettered)
            consumer = AIOKafkaConsumer(
                topics.dead_letters, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest"
            )
            await consumer.start()
            try:
                records = [r for b in (await consumer.getmany(timeout_ms=5000)).values() for r in b]
            finally:
                await consumer.stop()
            reasons = sorted(dict(r.headers)["reason"].decode() for r in records)
            assert reasons[1] == "unknown unit 00013"

            # the cause is fixed: the unit exists again; re-drive
            await client.put(
                "/v1/units",
                headers={"Authorization": f"Bearer {ADMIN}"},
                json=[
                    {
                        "code": "00013",
                        "name": "Phường Nguyễn Trung Trực",
                        "level": 3,
                        "parent_code": "001",
                    }
                ],
            )
            letters = await deadletters.pending(conn)
            assert len(letters) == 2
            sent, skipped = await deadletters.redrive(conn, producer, topics.events, letters)
            assert (sent, len(skipped)) == (1, 1)

            async def counted() -> None:
                r = await client.get("/v1/campaigns/c1/progress/00013")
                assert r.json()["indicators"][0]["value"] == 4

            await eventually(counted)
            assert await deadletters.pending(conn) != []  # the undecodable one stays
            assert len(await deadletters.pending(conn)) == 1
    finally:
        await producer.stop()
        await conn.close()


async def test_rebuild_from_the_topic_ends_in_the_same_state(
    settings: AggregatorSettings, database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=START)
    producer = reliable_producer(kafka.bootstrap, client_id="test")
    await producer.start()
    now = datetime.now(UTC)
    events = [
        Event(
            f"r{i}",
            ("00004", "00007", "00010")[i % 3],
            "cccd_collected",
            Kind.SNAPSHOT if i % 50 == 0 else Kind.INCREMENT,
            40 if i % 50 == 0 else 1 + i % 4,
            now - timedelta(hours=100 - i % 90),
            subject=f"{i % 40:064x}" if i % 7 == 0 and i % 50 else None,
            received_at=now,
        )
        for i in range(600)
    ]
    events = [
        e
        if e.subject is None
        else Event(
            e.event_id, e.unit, e.indicator, e.kind, 1, e.occurred_at, e.subject, e.received_at
        )
        for e in events
    ]
    conn = await asyncpg.connect(database)
    query = "SELECT unit, indicator, value, incr_after, snap_value FROM progress ORDER BY 1, 2"
    try:
        async with running(create_aggregator(settings)):
            for e in events[:400]:
                await producer.send(topics.events, encode(e), key=e.unit.encode())
            await producer.flush()
            midpoint = datetime.now(UTC)
            for e in events[400:]:
                await producer.send(topics.events, encode(e), key=e.unit.encode())
            await producer.flush()

            async def applied() -> None:
                assert await conn.fetchval("SELECT count(*) FROM events") == 600

            await eventually(applied)
        live = [tuple(r) for r in await conn.fetch(query)]
        # the day rollups' counts (their changes are exact in time order only: these
        # events are not)
        days_query = (
            "SELECT campaign_id, unit, indicator, day, increments, events FROM subtree_days"
            " WHERE increments <> 0 OR events <> 0 ORDER BY 1, 2, 3, 4"
        )
        daily = await conn.fetch(days_query)
        assert daily

        full = await rebuild(settings)
        assert full.events == 600
        assert [tuple(r) for r in await conn.fetch(query)] == live
        assert await conn.fetch(days_query) == daily

        partial = await rebuild(settings, since=midpoint)
        assert partial.records < 600
        assert [tuple(r) for r in await conn.fetch(query)] == live
    finally:
        await producer.stop()
        await conn.close()
