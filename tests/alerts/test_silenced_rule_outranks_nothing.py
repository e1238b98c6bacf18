"""A silenced alert outranks nothing (docs/alerts.md "Inhibition", "Silences"): a silence
of `stale` alone for a ward mutes its `stale`, and its chief, and the parent it escalates
to, hear of its `behind` instead. Before, the silenced `stale` still inhibited `behind`
(`groups.sketch` and the planner's SQL both said so), and nobody heard of the ward at all.
When the silence ends, `stale` outranks `behind` again."""

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.notifier.groups import may_plan, mutable_rules, sketch
from services.notifier.policy import effective
from services.notifier.rules import PRECEDENCE, Silence, inhibited_by, outranking
from services.notifier.settings import NotifierSettings
from tests.support.notifier import BEHIND_ONLY, policy_evaluator, queued, tree_with_webhooks
from tests.support.world import build_world
from tiendo.database import create_pool

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)  # Wednesday 10:00 local
# Nothing reported: 13 hours in, every unit is stale (12 h) and behind (0 of the plan).
SILENT = STARTS + timedelta(hours=13)
POLICY = {**BEHIND_ONLY, "stale": {"enabled": True, "for_seconds": 0}, "escalation_levels": 2}
SILENCE_ENDS = SILENT + timedelta(hours=60)


def firing_of(messages: list[Any], recipient: str) -> list[list[tuple[str, str, int]]]:
    """What each message to `recipient` lists as firing about ward 00010."""
    return [
        [(unit, rule, level) for unit, rule, _, _, level in m.firing if unit == "00010"]
        for m in messages
        if m.recipient == recipient
    ]


@pytest.mark.parametrize("silenced", [False, True])
async def test_a_silence_of_stale_alone_leaves_behind_told(database: str, silenced: bool) -> None:
    await build_world(database, starts_at=STARTS, units=tree_with_webhooks())
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=4)
    try:
        evaluator = await policy_evaluator(conn, database, "c1", POLICY)
        if silenced:
            await conn.execute(
                "INSERT INTO silences (campaign_id, unit, indicator, rule, starts_at, ends_at,"
                " created_by, comment) VALUES ('c1', '00010', NULL, 'stale', $1, $2, 'ops',"
                " 'the reporting system of the ward is down, we know')",
                STARTS,
                SILENCE_ENDS,
            )
        for at in (
            SILENT,
            SILENT + timedelta(seconds=61),  # group wait: the first message
            SILENT + timedelta(hours=48, minutes=2),  # escalated to district 002
            SILENT + timedelta(hours=48, minutes=4),
        ):
            await evaluator.evaluate_at(pool, at)
        both = await conn.fetch("SELECT rule, state FROM alerts WHERE unit = '00010'")
        assert sorted(tuple(r) for r in both) == [("behind", "firing"), ("stale", "firing")]
        told = "behind" if silenced else "stale"
        messages = await queued(conn)
        # the ward's chief: one rule, the first visible one; so the parent after 48 h
        assert firing_of(messages, "00010")[0] == [("00010", told, 0)]
        assert [("00010", told, 1)] in firing_of(messages, "002")
        assert all(
            f[1] == told
            for fs in firing_of(messages, "00010") + firing_of(messages, "002")
            for f in fs
        )
        if not silenced:
            return
        # the silence ends: `stale` is told (a change message), and outranks `behind` again
        await evaluator.evaluate_at(pool, SILENCE_ENDS + timedelta(seconds=1))
        after = [m for m in await queued(conn) if m not in messages]
        assert sorted((m.recipient, m.kind) for m in after) == [
            ("00010", "firing"),
            ("002", "firing"),
        ]
        assert firing_of(after, "00010") == [[("00010", "stale", 0)]]
        assert firing_of(after, "002") == [[("00010", "stale", 1)]]
    finally:
        await pool.close()
        await conn.close()


def _member(alert_id: int, rule: str, firing_rules: list[str], notified: bool) -> dict[str, Any]:
    """A member row as `group_sql.untold_members` reads it: ward 00010's, in its group."""
    return {
        "group_id": 1,
        "campaign_id": "c1",
        "recipient": "00010",
        "seq": 0,
        "anchor_seq": 0,
        "anchor_at": None,
        "repeat_slot": 0,
        "alert_id": alert_id,
        "level": 0,
        "state": "firing",
        "changed_at": SILENT,
        "notified": notified,
        "unit": "00010",
        "indicator": "cccd_collected",
        "rule": rule,
        "ancestors": ["01", "002"],
        "firing_rules": firing_rules,
    }


def test_the_planner_picks_a_group_by_the_same_inhibition_it_plans_with() -> None:
    """`may_plan` (which groups are worth locking) reads its untold members through the same
    `sketch` as the planning itself: a `behind` whose only outranking `stale` is silenced
    makes a message due, one outranked by a visible `stale` does not."""
    stale_only = Silence(1, STARTS, SILENCE_ENDS, "c1", "00010", None, "stale")
    rows = [_member(2, "behind", ["stale"], notified=False)]
    group = {"has_resolved": False, "anchor_at": None, "repeat_slot": 0}
    policy = effective(NotifierSettings(database_url="postgresql://unused"), POLICY)
    due = SILENT + timedelta(seconds=61)
    for silences, expected in (([stale_only], True), ([], False)):
        [(_, _, members)] = sketch(rows, silences, due).values()
        assert [m.inhibited for m in members] == [not expected]
        assert may_plan(group, members, policy, due) is expected
    # the silence of the ward's subtree by its district mutes `stale` just as well
    by_district = Silence(3, STARTS, SILENCE_ENDS, None, "002", None, "stale")
    [(_, _, members)] = sketch(rows, [by_district], due).values()
    assert may_plan(group, members, policy, due)


def test_the_sql_pre_filter_is_handed_the_one_rule() -> None:
    """The planner's SQL leaves out beforehand only members that `sketch` would find
    inhibited: outranked (by `rules.outranking`, which is `inhibited_by` as data) by a rule
    no active silence can mute."""
    pairs = outranking()
    assert pairs == [("behind", "stale"), ("at_risk", "stale"), ("at_risk", "behind")]
    for rule in [*PRECEDENCE, "bottom_rank"]:
        for over in [*PRECEDENCE, "bottom_rank"]:
            assert ((rule, over) in pairs) == (inhibited_by(rule, [over]) == over)
    stale_only = Silence(1, STARTS, SILENCE_ENDS, "c1", "00010", None, "stale")
    whole_ward = Silence(2, STARTS, SILENCE_ENDS, "c1", "00010", None, None)
    assert mutable_rules([]) == []
    assert mutable_rules([stale_only]) == ["stale"]
    assert mutable_rules([stale_only, whole_ward]) == ["stale", "behind", "at_risk", "bottom_rank"]
