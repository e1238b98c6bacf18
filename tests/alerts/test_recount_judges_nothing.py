"""While `tiendo aggregator rebuild` replays the events topic, the counters and the history
hold part of the events: the notifier judges nothing from them (docs/alerts.md "While the
counters are rebuilt"). No alert opens, resolves, repeats or escalates, no digest and no
commitment check goes; once the replay has caught up, the next pass judges as usual, and
the digest and the check that fell due meanwhile go then, from the whole figures.

The partial state is the rebuild's own: its reset (every counter back to 0, the history
cleared, the recount row written in the same transaction) and then part of the topic
replayed. What is replayed first is a ward's mis-report, later corrected: the partial
counters read that ward as done, and its firing `behind` alert as cleared, its
commitment as met, and the wards not replayed yet as behind at 0."""

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry

from services.aggregator import admin
from services.aggregator.repository import positions as position_sql
from services.aggregator.repository import recount as recount_sql
from services.aggregator.repository import reference as aggregator_reference
from services.notifier.evaluator import Evaluator
from services.notifier.explanations import ExplanationPolicy, check_explanation
from services.notifier.metrics import NotifierMetrics
from services.notifier.render import Renderer
from services.notifier.repository import explanations as explanation_sql
from services.notifier.settings import NotifierSettings
from services.notifier.summary import Summary
from tests.support.notifier import BEHIND_ONLY, queued, tree_with_webhooks
from tests.support.world import build_world
from tiendo.counting import Key, apply_events
from tiendo.database import create_pool
from tiendo.event import Event, Kind

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)  # Wednesday 10:00 in Hà Nội
LAGGING = STARTS + timedelta(days=10)  # Saturday 20 May, 10:00: 200 of 1,000 planned
GROUP_WAIT = timedelta(seconds=61)
POLICY = {
    **BEHIND_ONLY,
    "language": "en",
    "digest_times": ["07:00"],
    # a day and two minutes after it fired: 03:02 UTC on Sunday, during the rebuild
    "escalate_after_seconds": 86_400 + 120,
}
INDICATOR = "cccd_collected"
GROUP, TOPIC = "agg-rebuilt", "progress-events-rebuilt"


def _event(event_id: str, unit: str, value: int, at: datetime) -> Event:
    return Event(event_id, unit, INDICATOR, Kind.SNAPSHOT, value, at)


# The events topic in its order. Ward 00010 first reported 1,000 by mistake, then its
# true 50; the other wards keep pace, district 002 reports 250 of its own (so it is not
# behind with its one ward).
TOPIC_EVENTS = [
    _event("mis-report", "00010", 1000, STARTS + timedelta(days=9)),
    _event("correction", "00010", 50, LAGGING - timedelta(hours=1)),
    _event("ward-4", "00004", 300, LAGGING - timedelta(hours=1)),
    _event("ward-7", "00007", 300, LAGGING - timedelta(hours=1)),
    _event("district-2", "002", 250, LAGGING - timedelta(hours=1)),
]
# the replay has applied the mis-report alone (1 of 5 records)
REPLAYED = 1

REBUILD_STARTS = datetime(2023, 5, 20, 16, 0, tzinfo=UTC)
# the ward's commitment: back on plan by the end of Saturday 20 May (local midnight)
COMMITTED_DAY = date(2023, 5, 20)
COMMITMENT_DUE = datetime(2023, 5, 20, 17, 0, tzinfo=UTC)
DIGEST_SLOT = datetime(2023, 5, 21, 0, 0, tzinfo=UTC)  # 07:00 on Sunday in Hà Nội
# passes while the replay runs: the commitment has come due, the digest slot, its grace
# (an hour) over, the repeat slot (a day after the message) and the escalation passed
DURING = [
    REBUILD_STARTS + timedelta(minutes=5),
    datetime(2023, 5, 20, 17, 30, tzinfo=UTC),
    DIGEST_SLOT + timedelta(minutes=1),
    DIGEST_SLOT + timedelta(hours=1, minutes=30),
    datetime(2023, 5, 21, 3, 5, tzinfo=UTC),
]
AFTER = datetime(2023, 5, 21, 3, 15, tzinfo=UTC)


async def _reset_as_a_rebuild_does(conn: asyncpg.Connection) -> None:
    """The rebuild's reset (services/aggregator/rebuild.py, from the start): the history
    cleared, every counter recounted from nothing, the group's offsets rewound, the
    recount row written, in one transaction."""
    async with conn.transaction():
        await position_sql.clear_history(conn)
        await conn.execute(recount_sql.RECOUNT_SUBJECTS)
        for campaign_id in await aggregator_reference.campaign_ids(conn):
            await aggregator_reference.ensure_campaign_rows(conn, campaign_id)
        await recount_sql.recount(conn)
        await admin.replan_every(conn)
        await position_sql.set_offsets(conn, GROUP, TOPIC, {0: 0})
        await recount_sql.begin_recount(
            conn,
            started_at=REBUILD_STARTS,
            actor="ops",
            group_id=GROUP,
            topic=TOPIC,
            replays={0: (0, len(TOPIC_EVENTS))},
        )


async def _replay(conn: asyncpg.Connection, start: int, end: int) -> None:
    """Records `start` to `end` of the topic applied, and the group's offset stored."""
    await apply_events(conn, TOPIC_EVENTS[start:end])
    await position_sql.set_offsets(conn, GROUP, TOPIC, {0: end})


async def _explained(conn: asyncpg.Connection) -> None:
    """Ward 00010's chief commits to be back on plan by the end of the day."""
    alert = await conn.fetchval("SELECT id FROM alerts WHERE unit = '00010'")
    link = await explanation_sql.create_link(
        conn, "c1", "00010", [alert], "c1/00010/x", LAGGING, timedelta(days=7)
    )
    given = check_explanation(
        ExplanationPolicy(),
        frozenset({INDICATOR}),
        indicator=INDICATOR,
        cause="thieu_may",
        detail="",
        committed_date=COMMITTED_DAY,
        committed_rate=None,
        today=COMMITTED_DAY,
        last_day=(STARTS + timedelta(days=50)).date(),
    )
    await explanation_sql.add_explanation(
        conn, "c1", "00010", given, value_then=50, link_id=link.id, at=LAGGING, remote="t"
    )


async def _state(conn: asyncpg.Connection) -> dict[str, Any]:
    """What a pass may change: the alerts whole, the campaign's evaluated moment, the
    groups, what is queued, the commitment checks, the stored briefing ranks."""
    tables = {
        "alerts": "SELECT * FROM alerts ORDER BY id",
        "evaluated": "SELECT * FROM alert_evaluations ORDER BY 1",
        "groups": "SELECT * FROM alert_groups ORDER BY id",
        "members": "SELECT * FROM alert_group_members ORDER BY 1, 2",
        "queued": "SELECT dedup_key FROM notifications ORDER BY id",
        "checks": "SELECT * FROM commitment_checks ORDER BY 1",
        "ranks": "SELECT * FROM briefing_ranks ORDER BY 1, 2, 3, 4",
    }
    return {name: [dict(r) for r in await conn.fetch(sql)] for name, sql in tables.items()}


def _waiting(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("tiendo_notifier_waiting_for_recount")


async def test_a_pass_during_a_rebuild_judges_nothing_and_what_waited_goes_after(
    database: str,
) -> None:
    await build_world(database, starts_at=STARTS, units=tree_with_webhooks())
    conn = await asyncpg.connect(database)
    # the evaluator as the service runs it: the notifier's role reads the recount through
    # its views
    pool = await create_pool(database.replace("://tiendo@", "://tiendo_notifier@", 1), max_size=4)
    metrics = NotifierMetrics()
    try:
        await conn.execute(
            "INSERT INTO alert_policies (campaign_id, config) VALUES ('c1', $1)",
            json.dumps(POLICY),
        )
        evaluator = Evaluator(
            NotifierSettings(database_url=database), Renderer(), ("webhook",), metrics
        )
        await apply_events(conn, TOPIC_EVENTS)
        # a ward falling behind is alerted, and told
        await evaluator.evaluate_at(pool, LAGGING)
        await evaluator.evaluate_at(pool, LAGGING + GROUP_WAIT)
        [told] = await queued(conn)
        assert (told.recipient, told.kind, told.firing) == (
            "00010",
            "firing",
            [("00010", "behind", 50, 1000, 0)],
        )
        await _explained(conn)
        assert _waiting(metrics.registry) == 0

        await _reset_as_a_rebuild_does(conn)
        await _replay(conn, 0, REPLAYED)
        before = await _state(conn)
        for at in DURING:
            for summary in (
                await evaluator.evaluate_at(pool, at),
                # a feed pass of every key
                await evaluator.evaluate_at(pool, at, await _keys(conn)),
            ):
                assert summary.recounting is not None
                assert (summary.recounting.replayed, summary.recounting.total) == (REPLAYED, 5)
                assert (summary.changes, summary.messages) == ([], [])
            assert _waiting(metrics.registry) == 1
        assert await _state(conn) == before

        # the replay catches up (the rebuild's recount row stays until it deletes it:
        # the offsets reaching its end are what ends the recount)
        await _replay(conn, REPLAYED, len(TOPIC_EVENTS))
        after = await evaluator.evaluate_at(pool, AFTER)
        assert after.recounting is None
        assert _waiting(metrics.registry) == 0
        # judged as usual, from the whole figures: the ward is still behind (and escalated,
        # its escalation having come due), the others were never behind
        alerts = await conn.fetch("SELECT unit, rule, state, escalation_level FROM alerts")
        assert [tuple(a) for a in alerts] == [("00010", "behind", "firing", 1)]
        assert after.changes == []
        kinds = {(recipient, kind) for _, recipient, kind in after.messages}
        # the repeat held through the replay, and the commitment, checked at its due
        # moment from the whole history: not met
        assert {("00010", "repeat"), ("00010", "commitment")} <= kinds
        check = await conn.fetchrow("SELECT due_at, met FROM commitment_checks")
        assert check is not None
        assert (check["due_at"], check["met"]) == (COMMITMENT_DUE, False)
        # the digest of the slot that fell during the replay, late by more than its grace:
        # deferred, not skipped, with the whole figures
        digests = [m for m in await queued(conn) if m.kind == "digest"]
        assert {d.recipient for d in digests} == {"01", "001", "002", "00004", "00007", "00010"}
        assert {datetime.fromisoformat(d.body["slot"]) for d in digests} == {DIGEST_SLOT}
        [ward] = [d for d in digests if d.recipient == "00010"]
        assert [(i["value"], i["target"]) for i in ward.body["indicators"]] == [(50, 1000)]
        # once: a later pass in the day sends it again to nobody
        await evaluator.evaluate_at(pool, AFTER + timedelta(minutes=5))
        assert len([m for m in await queued(conn) if m.kind == "digest"]) == len(digests)
    finally:
        await pool.close()
        await conn.close()


async def test_a_digest_missed_before_a_rebuild_stays_missed(database: str) -> None:
    """Deferring is for the slots a rebuild held back: a slot more than its grace old when
    the first pass waited (the notifier was down) is skipped as before."""
    await build_world(database, starts_at=STARTS, units=tree_with_webhooks())
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=4)
    try:
        await conn.execute(
            "INSERT INTO alert_policies (campaign_id, config) VALUES ('c1', $1)",
            json.dumps(POLICY),
        )
        evaluator = Evaluator(NotifierSettings(database_url=database), Renderer(), ("webhook",))
        await apply_events(conn, TOPIC_EVENTS)
        await _reset_as_a_rebuild_does(conn)
        # the first pass after the 07:00 slot, two hours late, waits; then the replay ends
        waited = await evaluator.evaluate_at(pool, DIGEST_SLOT + timedelta(hours=2))
        assert waited.recounting is not None
        await _replay(conn, 0, len(TOPIC_EVENTS))
        judged: Summary = await evaluator.evaluate_at(
            pool, DIGEST_SLOT + timedelta(hours=2, minutes=5)
        )
        assert judged.recounting is None
        assert [m for m in await queued(conn) if m.kind == "digest"] == []
    finally:
        await pool.close()
        await conn.close()


async def _keys(conn: asyncpg.Connection) -> list[Key]:
    """Every (campaign, unit, indicator) with a target."""
    rows = await conn.fetch("SELECT campaign_id, unit, indicator FROM progress WHERE target > 0")
    return sorted(Key(r["campaign_id"], r["unit"], r["indicator"]) for r in rows)
