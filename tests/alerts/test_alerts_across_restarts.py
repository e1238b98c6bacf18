"""Promise 4 (contract §8) across restarts: every chief gets exactly one message per alert
state change (told apart by delivery id, as a deduplicating receiver would) while the
notifier is killed mid-send, PostgreSQL crash-stops and is killed, and the broker is killed.

The servers are the module's own (tests/support/restarts.py), as in
tests/counting/test_restarts.py."""

import asyncio
import itertools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.load import Load, increment
from tests.support.notifier import BEHIND_ONLY, HttpReceiver, tree_with_contacts
from tests.support.restarts import (
    START,
    UNITS,
    Stack,
    everything_agrees,
    ingest_client,
    recovered_by_themselves,
    servers_fixture,  # noqa: F401  (a fixture, used through `stack`)
    stack_fixture,  # noqa: F401  (the `stack` fixture)
    started,
)
from tests.support.stack import eventually, until_serving
from tests.support.world import build_world, issue_token


@pytest.mark.slow
async def test_each_alert_state_change_reaches_its_chief_once_across_restarts(
    stack: Stack, http_receiver: HttpReceiver
) -> None:
    # 10 of 50 days elapsed: every ward is expected at 200 of 1000; `behind` below 0.9 of it.
    units = tree_with_contacts(http_receiver, chat=False)
    await build_world(stack.database, starts_at=START, units=units)
    token = await issue_token(stack.database)
    policy = {**BEHIND_ONLY, "group_wait_seconds": 0, "repeat_interval_seconds": 0}
    [_] = await stack.query(
        "INSERT INTO alert_policies (campaign_id, config) VALUES ('c1', $1) RETURNING 1",
        json.dumps(policy),
    )
    ingest, aggregator, notifier = stack.ingest(), stack.aggregator(), stack.notifier()
    pg, kafka = stack.postgres, stack.kafka
    serial = itertools.count()
    occurred = datetime.now(UTC) - timedelta(minutes=5)

    def told() -> dict[str, list[str]]:
        """Per chief, the kind of each distinct message (delivery id), in arrival order."""
        out: dict[str, list[str]] = {}
        for r in http_receiver.distinct("hook/").values():
            out.setdefault(r.path.removeprefix("hook/"), []).append(r.json()["kind"])
        return out

    async def until_told(expected: dict[str, list[str]]) -> None:
        async def check() -> None:
            assert told() == expected

        await eventually(check, timeout=60, every=0.2)

    async with (
        started(ingest, aggregator) as pids,
        ingest_client(ingest, token) as client,
    ):
        load = Load(client, UNITS, ("cccd_collected",))

        async def change(*values: tuple[str, int]) -> None:
            """One batch of increments; wait until the aggregator has counted it."""
            await load.send(
                [
                    increment(f"n-{next(serial)}", unit, "cccd_collected", value, occurred)
                    for unit, value in values
                ]
            )

            async def counted() -> None:
                [row] = await stack.query("SELECT count(*) AS n FROM events")
                assert row["n"] == len(load.ledger.accepted)

            await eventually(counted, timeout=60, every=0.05)

        try:
            # Wards 00004 and 00007 keep pace, 00010 has 50: it and its district 002 are
            # behind; district 001 (500 of 400) and the city (550 of 600) are not.
            await change(("00004", 250), ("00007", 250), ("00010", 50))
            # 1. The notifier is killed while it sends the first messages (receivers
            #    answer after 2 s); a new one takes over once the dead one's lease ends.
            http_receiver.delay = 2.0
            notifier.start()
            await until_serving(notifier)

            async def sending() -> None:
                assert http_receiver.received

            await eventually(sending, timeout=60, every=0.02)
            notifier.kill()
            http_receiver.delay = 0.0
            notifier.start()
            expected = {"00010": ["firing"], "002": ["firing"]}
            await until_told(expected)

            # 2. 00010 catches up; PostgreSQL crash-stops as the change reaches the notifier.
            await change(("00010", 400))
            await stack.restart_postgres(pg.stop_immediately)
            expected = {"00010": ["firing", "resolved"], "002": ["firing", "resolved"]}
            await until_told(expected)

            # 3. 00010 falls behind again (a correction); the broker is killed at once,
            #    possibly before the aggregator has published the change.
            await load.send(
                [increment(f"n-{next(serial)}", "00010", "cccd_collected", -400, occurred)]
            )
            await stack.restart_kafka(kafka.kill)
            expected = {
                "00010": ["firing", "resolved", "firing"],
                "002": ["firing", "resolved", "firing"],
            }
            await until_told(expected)

            # 4. 00007 falls behind, and with it 001 and the city (350 of 600); the notifier
            #    and PostgreSQL are both killed as the change is counted.
            await change(("00007", -200))
            notifier.kill()
            await stack.restart_postgres(pg.kill)
            notifier.start()
            expected |= {"00007": ["firing"], "001": ["firing"], "01": ["firing"]}
            await until_told(expected)

            async def settled() -> None:
                rows = await stack.query("SELECT status FROM notifications")
                assert {r["status"] for r in rows} == {"delivered"}, rows

            await eventually(settled, timeout=60, every=0.5)
            # more evaluations, and nothing more is sent
            await asyncio.sleep(3)
            assert told() == expected
            await recovered_by_themselves(pids, ingest, aggregator)
            await until_serving(notifier)
            await everything_agrees(stack)
        finally:
            notifier.stop()
            await stack.servers.ensure_running()

    # A second copy under the same delivery id only where a send was cut off before its
    # result was written (at least once to the channel; the id lets the receiver drop it).
    rows = await stack.query("SELECT dedup_key FROM notifications WHERE channel = 'webhook'")
    assert {r["dedup_key"] for r in rows} == set(http_receiver.distinct("hook/"))
    interrupted = {
        r["dedup_key"]
        for r in await stack.query(
            "SELECT n.dedup_key FROM delivery_attempts d"
            " JOIN notifications n ON n.id = d.notification_id WHERE d.finished_at IS NULL"
        )
    }
    arrivals = Counter(r.delivery_id for r in http_receiver.at("hook/"))
    assert {d for d, n in arrivals.items() if n > 1} <= interrupted, arrivals
    assert interrupted, "the first kill did not cut a delivery"
