"""The admin commands that change the counters outside the admin API — `tiendo aggregator
redrive` and `rebuild` — are audited like every admin change (contract §7): who (`--actor`,
default the OS user, never empty), what (the letters sent and skipped; the moment replayed
from and each partition's first offset), when."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from devtools.localstack import KafkaBroker
from services.aggregator.repository import positions as position_sql
from services.aggregator.repository.positions import DeadLetter
from tests.support.stack import Topics
from tests.support.world import build_world
from tiendo import audit
from tiendo.event import Event, Kind, encode
from tiendo.kafka import ensure_topics, event_topics

START = datetime.now(UTC) - timedelta(days=5)


def aggregator(
    database: str, kafka: KafkaBroker, topics: Topics, *args: str
) -> subprocess.CompletedProcess[str]:
    """`tiendo aggregator …` on this test's database and topics, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIENDO_")}
    env |= {
        "TIENDO_AGGREGATOR_DATABASE_URL": database,
        "TIENDO_AGGREGATOR_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "TIENDO_AGGREGATOR_GROUP_ID": f"agg-{topics.events}",
        **topics.env("TIENDO_AGGREGATOR_"),
    }
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "aggregator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def audited(database: str, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch(
            "SELECT actor, subject, details FROM audit_log WHERE action = $1 ORDER BY id", action
        )
    finally:
        await conn.close()
    return [(r["actor"], r["subject"], json.loads(r["details"])) for r in rows]


async def test_a_redrive_names_who_sent_which_letters_and_skipped_which(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=START)
    await ensure_topics(kafka.bootstrap, event_topics(topics.events, topics.dead_letters, 1))
    event = Event("e-1", "00004", "cccd_collected", Kind.INCREMENT, 2, START + timedelta(days=1))
    conn = await asyncpg.connect(database)
    try:
        for letter in (
            DeadLetter(0, 5, "e-1", "unknown unit 00004", encode(event), "00004"),
            DeadLetter(0, 6, None, "undecodable", b"\x00not an event"),
        ):
            await position_sql.save_dead_letter(conn, topics.events, letter)
    finally:
        await conn.close()

    done = aggregator(database, kafka, topics, "redrive", "--actor", "lan")
    assert done.returncode == 0, done.stderr
    [(actor, subject, details)] = await audited(database, "deadletters.redrive")
    assert (actor, subject) == ("lan", topics.events)
    assert details["sent"] == [{"letter": "0:5", "event_id": "e-1"}]
    assert [(s["letter"], s["event_id"]) for s in details["skipped"]] == [("0:6", None)]

    # the undecodable letter stays; skipping it again is recorded under the OS user
    again = aggregator(database, kafka, topics, "redrive")
    assert again.returncode == 0, again.stderr
    rows = await audited(database, "deadletters.redrive")
    assert [(a, d["sent"], len(d["skipped"])) for a, _, d in rows[1:]] == [
        (audit.default_actor(), [], 1)
    ]
    refused = aggregator(database, kafka, topics, "redrive", "--actor", " ")
    assert refused.returncode != 0
    assert len(await audited(database, "deadletters.redrive")) == 2


async def test_a_rebuild_names_who_and_where_it_replays_from(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=START)
    since = datetime.now(UTC) - timedelta(hours=1)
    done = aggregator(database, kafka, topics, "rebuild", "--since", since.isoformat(),
                      "--actor", "lan")  # fmt: skip
    assert done.returncode == 0, done.stderr
    [(actor, subject, details)] = await audited(database, "counters.rebuild")
    assert (actor, subject) == ("lan", topics.events)
    assert datetime.fromisoformat(details["since"]) == since
    # an empty topic: every partition is replayed from its start
    assert details["from_offsets"] == {"0": 0, "1": 0, "2": 0}

    assert aggregator(database, kafka, topics, "rebuild").returncode == 0
    [(actor, _, details)] = (await audited(database, "counters.rebuild"))[1:]
    assert (actor, details["since"]) == (audit.default_actor(), None)
