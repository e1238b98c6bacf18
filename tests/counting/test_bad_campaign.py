"""Bad reference data is refused with every problem listed, and a bad campaign that got
stored anyway (SQL, old rows, a newer tzdata) cannot stop counting for the others (contract §7)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.cli import import_file
from services.aggregator.settings import AggregatorSettings
from tests.support.identities import ADMIN as AUTH
from tests.support.identities import ADMIN_SECRET as ADMIN
from tests.support.progress import assert_live_equals_history
from tests.support.stack import Topics, aggregator_settings, eventually, running
from tests.support.world import TREE, build_world
from tiendo.event import Event, Kind, encode
from tiendo.kafka import reliable_producer

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=5)
DEADLINE = START + timedelta(days=30)


@pytest.fixture
def settings(database: str, kafka: KafkaBroker, topics: Topics) -> AggregatorSettings:
    return aggregator_settings(database, kafka.bootstrap, topics, campaign_check_seconds=1)


def campaign_body(deadline: datetime, **more: Any) -> dict[str, Any]:
    return {
        "name": "c",
        "starts_at": START.isoformat(),
        "deadline": deadline.isoformat(),
        "indicators": ["cccd_collected"],
        **more,
    }


async def test_a_bad_campaign_is_refused_with_every_problem_listed(
    settings: AggregatorSettings, database: str, tmp_path: Path
) -> None:
    await build_world(database, starts_at=START, days=30)
    async with running(create_aggregator(settings.model_copy(update={"consume": False}))) as c:
        c.headers.update(AUTH)
        r = await c.put(
            "/v1/campaigns/c9",
            headers=AUTH,
            json=campaign_body(
                DEADLINE,
                timezone="Asia/Hanoi_typo",
                indicators=["cccd_collected", "cccd_colected"],
                behind_threshold=1.5,
                stale_after_seconds=10,
                milestones=[
                    {"at": (START + timedelta(days=20)).isoformat(), "fraction": 0.5},
                    {"at": (START + timedelta(days=10)).isoformat(), "fraction": 0.7},
                    {"at": (DEADLINE + timedelta(days=1)).isoformat(), "fraction": 1},
                ],
            ),
        )
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in r.json()["errors"]] == [
            "timezone",
            "indicators[1]",
            "behind_threshold",
            "stale_after_seconds",
            "milestones[2].at",
            "milestones[0].fraction",  # 0.7 on the 10th, then 0.5 on the 20th
        ]
        assert (await c.get("/v1/campaigns/c9")).status_code == 404

        # a unit's deadline outside the window, from the spreadsheet: the row is named
        sheet = tmp_path / "targets.csv"
        late = (DEADLINE + timedelta(days=1)).isoformat()
        sheet.write_text(
            f"unit,indicator,target,deadline\n00004,cccd_collected,5,\n00007,cccd_collected,5,{late}\n",
            encoding="utf-8",
        )
        problems = await import_file(c, "targets", sheet, "c1", ADMIN)
        assert problems == [
            "line 3: deadline: a target's deadline must lie in the campaign window",
            "nothing was imported",
        ]
        # nor can the campaign's deadline move before a unit's own deadline
        good = {"unit": "00004", "indicator": "cccd_collected", "target": 5}
        r = await c.put(
            "/v1/campaigns/c1/targets",
            headers=AUTH,
            json=[{**good, "deadline": (START + timedelta(days=20)).isoformat()}],
        )
        assert r.status_code == 200, r.text
        r = await c.put(
            "/v1/campaigns/c1",
            headers=AUTH,
            json=campaign_body(START + timedelta(days=10)),
        )
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "targets[00004/cccd_collected].deadline"


def _increment(event_id: str, unit: str, value: int, hours_ago: int) -> Event:
    at = NOW - timedelta(hours=hours_ago)
    return Event(event_id, unit, "cccd_collected", Kind.INCREMENT, value, at, received_at=NOW)


async def test_a_campaign_stored_with_a_bad_zone_is_left_out_and_the_others_keep_counting(
    settings: AggregatorSettings, database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=START, days=30)
    producer = reliable_producer(kafka.bootstrap, client_id="test")
    await producer.start()
    conn = await asyncpg.connect(database)
    try:
        async with running(create_aggregator(settings)) as client:
            client.headers.update(AUTH)
            await producer.send_and_wait(topics.events, encode(_increment("a", "00004", 3, 30)))

            async def counted(unit: str, value: int, campaign: str = "c1") -> None:
                r = await client.get(f"/v1/campaigns/{campaign}/progress/{unit}")
                assert r.json()["indicators"][0]["value"] == value

            await eventually(lambda: counted("00004", 3))

            # inserted behind the admin API's back: every batch failed on it before
            await conn.execute(
                "INSERT INTO campaigns (id, name, starts_at, deadline, timezone, indicators)"
                " VALUES ('bad', 'typo', $1, $2, 'Asia/Hanoi_typo', '{cccd_collected}')",
                START,
                DEADLINE,
            )
            for i, unit in enumerate(("00007", "00010", "001")):
                event = _increment(f"b{i}", unit, i + 1, 20 - i)
                await producer.send_and_wait(topics.events, encode(event), key=unit.encode())
            await eventually(lambda: counted("01", 3 + 1 + 2 + 3))

            async def flagged() -> None:
                ready = await client.get("/readyz")
                assert ready.status_code == 200
                assert "timezone" in ready.json()["campaigns_unusable"]["bad"]
                loops = ready.json()["loops"]
                assert sorted(loops) == [
                    "campaign_check",
                    "consumer",
                    "held_events",
                    "tree_check",
                    "unit_metrics",
                ]
                assert loops["consumer"]["state"] == "running"
                assert loops["consumer"]["last_heartbeat"] is not None
                metrics = (await client.get("/metrics")).text
                assert 'tiendo_aggregator_campaign_unusable{campaign="bad"} 1.0' in metrics
                assert 'tiendo_aggregator_campaign_unusable{campaign="c1"} 0.0' in metrics

            await eventually(flagged)

            # its readers are told why, never a 500 (its zone is unknown to every host)
            for path in (
                "/v1/campaigns/bad/progress/01",
                "/v1/campaigns/bad/leaderboard?level=3&indicator=cccd_collected",
                "/v1/campaigns/bad/leaderboard?level=3&indicator=cccd_collected&format=csv",
                "/v1/campaigns/c1/compare/bad?indicator=cccd_collected&unit=01",
            ):
                r = await client.get(path)
                assert r.status_code == 409, (path, r.status_code, r.text)
                assert r.json()["type"].endswith("campaign-unusable"), r.text
                assert [e["field"] for e in r.json()["errors"]] == ["timezone"], r.text
            assert (await client.get("/v1/campaigns/c1/progress/01")).status_code == 200

            # fixed through the API: recounted from the stored events, live equals history
            r = await client.put(
                "/v1/campaigns/bad",
                headers=AUTH,
                json=campaign_body(DEADLINE, timezone="Asia/Ho_Chi_Minh"),
            )
            assert r.status_code == 200, r.text
            assert (await client.get("/readyz")).json()["campaigns_unusable"] == {}
            expected = {
                ("01", "cccd_collected"): 9,
                ("001", "cccd_collected"): 3 + 1 + 3,
                ("002", "cccd_collected"): 2,
                ("00004", "cccd_collected"): 3,
                ("00007", "cccd_collected"): 1,
                ("00010", "cccd_collected"): 2,
            }
            units = [u.code for u in TREE]
            await assert_live_equals_history(client, "bad", units, expected)

            # and from now on it counts live, beside the others
            await producer.send_and_wait(topics.events, encode(_increment("c", "00010", 5, 1)))
            await eventually(lambda: counted("00010", 7, "bad"))
            await counted("00010", 7)
            expected["01", "cccd_collected"] += 5
            expected["002", "cccd_collected"] += 5
            expected["00010", "cccd_collected"] += 5
            await assert_live_equals_history(client, "bad", units, expected)
    finally:
        await producer.stop()
        await conn.close()
