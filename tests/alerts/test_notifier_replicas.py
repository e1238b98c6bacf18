"""Promise 4 (contract §8) under fire: two notifier replicas on one database, one killed with
SIGKILL while it is in the middle of sending. Every message exists once in the log, reaches
each receiver under exactly one delivery id, and a receiver sees a second copy only of a
message whose first send the killed replica never got to record."""

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from devtools.localstack import KafkaBroker, free_port
from tests.support.notifier import (
    BEHIND_ONLY,
    Feed,
    HttpReceiver,
    SmtpReceiver,
    progress,
    tree_with_contacts,
)
from tests.support.stack import ServiceProcess, Topics, eventually, service_env
from tests.support.world import WARDS, build_world

START = datetime.now(UTC) - timedelta(days=10)
CHANNELS = ("email", "webhook", "chat")


def _replica(
    name: str, database: str, kafka: KafkaBroker, topics: Topics, smtp_port: int, tmp_path: Path
) -> ServiceProcess:
    return ServiceProcess(
        "notifier",
        {
            **service_env(
                "TIENDO_NOTIFIER_",
                database_url=database,
                kafka_bootstrap=kafka.bootstrap,
                group_id=f"ntf-{topics.progress}",
                port=free_port(),
                webhook_secret="test-webhook-secret",
                smtp_host="127.0.0.1",
                smtp_port=smtp_port,
                evaluate_every_seconds=0.5,
                delivery_poll_seconds=0.2,
                delivery_timeout_seconds=6,
                delivery_backoff_seconds=0.1,
                delivery_backoff_max_seconds=0.5,
                delivery_lease_seconds=8,
                digest_times="",
                bottom_rank_n=0,
            ),
            **topics.env("TIENDO_NOTIFIER_"),
        },
        tmp_path / f"{name}.log",
    )


@pytest.mark.slow
async def test_two_replicas_one_killed_mid_delivery_each_message_arrives_once_per_receiver(
    database: str,
    kafka: KafkaBroker,
    topics: Topics,
    http_receiver: HttpReceiver,
    smtp_receiver: SmtpReceiver,
    tmp_path: Path,
) -> None:
    await build_world(database, starts_at=START, units=tree_with_contacts(http_receiver))
    conn = await asyncpg.connect(database)
    policy = {**BEHIND_ONLY, "group_wait_seconds": 0, "repeat_interval_seconds": 0}
    await conn.execute(
        "INSERT INTO alert_policies (campaign_id, config) VALUES ('c1', $1)", json.dumps(policy)
    )
    # Receivers take 3 s to answer: a sender is killed while it waits for one.
    http_receiver.delay = 3.0
    smtp_receiver.delay = 3.0
    replicas = {
        name: _replica(name, database, kafka, topics, smtp_receiver.port, tmp_path)
        for name in ("a", "b")
    }
    feed = Feed(database)
    try:
        # The board is set before the replicas start: they judge every unit with a target
        # from their first pass, and units without reports would be behind.
        now = datetime.now(UTC)
        # Every ward has done 50 of the expected 200: three chiefs, three channels each.
        await feed.send(
            *(progress(w, 50, at=now) for w in WARDS),
            # the districts' own figures keep them (and the city) on pace: only wards lag
            progress("001", 300, at=now),
            progress("002", 150, at=now),
        )
        for r in replicas.values():
            r.start()

        async def topic_ready() -> None:
            # a replica created the topic and both are consuming (group joined)
            n = await conn.fetchval(
                "SELECT count(*) FROM schema_migrations WHERE service = 'notifier'"
            )
            assert n >= 2

        await eventually(topic_ready, timeout=120)

        async def one_in_flight() -> tuple[str, int]:
            got = {r.delivery_id for r in http_receiver.received}
            rows = await conn.fetch(
                "SELECT dedup_key, claimed_by FROM notifications WHERE status = 'sending'"
                " AND dedup_key = ANY ($1)",
                list(got),
            )
            assert rows, "no message reached a receiver while its sender waits yet"
            return rows[0]["dedup_key"], int(rows[0]["claimed_by"].split(":")[1])

        delivery_id, pid = await eventually(one_in_flight, timeout=120, every=0.05)
        [victim] = [n for n, r in replicas.items() if r.process and r.process.pid == pid]
        replicas[victim].kill()
        killed = f":{pid}:"

        async def all_delivered() -> None:
            statuses = Counter(
                r["status"] for r in await conn.fetch("SELECT status FROM notifications")
            )
            assert statuses == {"delivered": len(WARDS) * len(CHANNELS)}, statuses

        await eventually(all_delivered, timeout=180, every=0.5)
        # The killed replica comes back; several more evaluations change nothing.
        replicas[victim].start()
        await asyncio.sleep(5)
        await all_delivered()

        rows = await conn.fetch("SELECT id, dedup_key, channel, recipient FROM notifications")
        assert sorted((r["recipient"], r["channel"]) for r in rows) == sorted(
            (w, c) for w in WARDS for c in CHANNELS
        )
        interrupted = {
            r["dedup_key"]
            for r in await conn.fetch(
                "SELECT n.dedup_key FROM delivery_attempts d"
                " JOIN notifications n ON n.id = d.notification_id"
                " WHERE d.finished_at IS NULL AND d.replica LIKE '%' || $1 || '%'",
                killed,
            )
        }
        assert delivery_id in interrupted

        # Webhooks and chat: one delivery id per message; a second copy only where the
        # killed replica's send had got through before it died.
        arrivals = Counter(r.delivery_id for r in http_receiver.received)
        expected_http = {r["dedup_key"] for r in rows if r["channel"] != "email"}
        assert set(arrivals) == expected_http
        assert all(n in (1, 2) for n in arrivals.values()), arrivals
        assert {d for d, n in arrivals.items() if n == 2} <= interrupted
        assert arrivals[delivery_id] == 2
        # Email: one Message-ID per message, the same on a resend.
        mails = Counter(str(m["X-Tiendo-Delivery-Id"]) for m in smtp_receiver.messages)
        assert set(mails) == {r["dedup_key"] for r in rows if r["channel"] == "email"}
        assert len(smtp_receiver.distinct()) == len(WARDS)
        assert {d for d, n in mails.items() if n == 2} <= interrupted
    finally:
        for r in replicas.values():
            r.stop()
        await conn.close()
