"""The pure step of a pass (`services.notifier.judging`): what it decides of each alert,
against the rules' own functions, over random units, open alerts and policies."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifier.inputs import Judged
from services.notifier.judging import Written, judge_alerts
from services.notifier.lifecycle import alert_of
from services.notifier.policy import effective
from services.notifier.repository.alerts import AlertKey
from services.notifier.rules import Change, Rule, held, ranked_alerted, step
from services.notifier.settings import NotifierSettings
from tiendo.board.campaign import Campaign
from tiendo.board.figures import judge_many
from tiendo.board.repository import Counter
from tiendo.counting import Key, ValueAt
from tiendo.pace import Thresholds

AT = datetime(2026, 6, 10, 3, 0, tzinfo=UTC)
SETTINGS = NotifierSettings()
GONE = Key("c", "gone", "x")  # an open alert whose key no pass judges any more


def _campaign(days_in: float) -> Campaign:
    """A campaign of 50 days, `days_in` of them past at AT."""
    start = AT - timedelta(days=days_in)
    return Campaign(
        "c",
        "c",
        start,
        start + timedelta(days=50),
        "Asia/Ho_Chi_Minh",
        ("x",),
        Thresholds(0.9, timedelta(hours=12)),
        (),
    )


def _row(i: int, state: str, hours: int, figures: dict[str, Any]) -> asyncpg.Record:
    since = AT - timedelta(hours=hours)
    return cast(
        asyncpg.Record,
        {
            "id": i,
            "version": 1,
            "details": json.dumps(figures),
            "state": state,
            "since": since,
            "fired_at": since if state == "firing" else None,
            "resolved_at": None,
        },
    )


unit_figures = st.tuples(
    st.integers(0, 1200),  # value
    st.sampled_from([0, 1000]),  # target (0: not judged by a pass, still here)
    st.one_of(st.none(), st.integers(0, 72)),  # hours since the last event
    st.integers(0, 300),  # moved in the window
)
open_alert = st.tuples(
    st.sampled_from(list(Rule)), st.sampled_from(["pending", "firing"]), st.integers(1, 60)
)


@settings(max_examples=150, deadline=None)
@given(
    units=st.lists(unit_figures, min_size=1, max_size=12),
    opened=st.lists(st.tuples(st.integers(0, 12), open_alert), max_size=20),
    days_in=st.sampled_from([0.02, 3, 20, 49.9, 50.5]),
    for_hours=st.sampled_from([0, 2, 30]),
    behind_on=st.booleans(),
    full=st.booleans(),
    ranked=st.sets(st.integers(0, 11), max_size=3),
)
def test_each_alert_is_stepped_or_touched_as_its_rules_say(
    units: list[tuple[int, int, int | None, int]],
    opened: list[tuple[int, tuple[Rule, str, int]]],
    days_in: float,
    for_hours: int,
    behind_on: bool,
    full: bool,
    ranked: set[int],
) -> None:
    campaign = _campaign(days_in)
    counters = [
        Counter(
            "c",
            f"u{i}",
            "",
            3,
            None,
            "x",
            value,
            0,
            target,
            None,
            None if quiet is None else AT - timedelta(hours=quiet),
        )
        for i, (value, target, quiet, _) in enumerate(units)
    ]
    values = {c.unit: ValueAt(c.value, c.last_event_at) for c in counters}
    ago = {c.unit: max(0, c.value - moved) for c, (*_, moved) in zip(counters, units, strict=True)}
    judged = [Judged(v, campaign) for v in judge_many(campaign, counters, values, ago, AT).values()]
    policy = effective(
        SETTINGS,
        {
            "behind": {"enabled": behind_on, "for_seconds": for_hours * 3600},
            "stale": {"for_seconds": for_hours * 3600},
        },
    )
    keys = [j.key for j in judged]
    open_: dict[AlertKey, asyncpg.Record] = {}
    for n, (i, (rule, state, hours)) in enumerate(opened):
        key = keys[i] if i < len(keys) else GONE
        open_[AlertKey(key, rule.value)] = _row(n, state, hours, {"value": -1})
    ranks = {keys[i]: {"rank": 1} for i in ranked if i < len(keys)}

    judgement = judge_alerts(
        judged, {"c": campaign}, {"c": policy}, policy, open_, ranks, AT, full, Written()
    )

    todo = {(t.key, t.rule): t for t in judgement.todo}
    touched = {t.alert_id for t in judgement.touched}
    assert len(todo) == len(judgement.todo)  # each alert decided once
    assert len(touched) == len(judgement.touched)
    enabled = policy.enabled()
    for j in judged:
        holds = {r: h and r in enabled for r, h in held(j.verdict, campaign, AT).items()}
        if full:
            holds[Rule.BOTTOM_RANK] = (
                Rule.BOTTOM_RANK in enabled
                and j.key in ranks
                and ranked_alerted(j.verdict, campaign, AT)
            )
        for rule in Rule:
            row = open_.get(AlertKey(j.key, rule.value))
            decided = todo.pop((j.key, rule), None)
            if rule not in holds:  # a feed pass does not judge the briefing's rank
                assert decided is None
                assert row is None or row["id"] not in touched
                continue
            _, change = step(alert_of(row), holds[rule], AT, policy.rule(rule).for_)
            if change is Change.NONE:
                assert decided is None
                # its figures differ from the stored ones (-1): rewritten, full pass or not
                assert row is None or row["id"] in touched
            else:
                assert decided is not None
                assert (decided.holds, decided.expected) == (holds[rule], change)
                assert decided.details["value"] == j.progress.value
    # what is left: the alerts of a key no longer judged, closed by a full pass only
    gone = {(a.key, Rule(a.rule)) for a in open_ if a.key == GONE}
    assert set(todo) == (gone if full else set())
    for t in todo.values():
        assert not t.holds
        # closed as untracked (its target went), or with the campaign's final word
        ended = campaign.ended(AT)
        assert t.details["deadline_passed"] is ended
        assert t.details.get("closed_because") == (None if ended else "untracked")


def test_figures_are_rewritten_only_when_they_change_in_a_full_pass() -> None:
    """A steady full pass rewrites nothing: the figures kept of each alert (`Written`)
    are those just computed; a change of a unit's value rewrites its alerts, and only
    them; another replica's write (a new version) is compared with what it stored."""
    campaign = _campaign(20)
    policy = effective(SETTINGS, {})

    def judged(values: dict[str, int]) -> list[Judged]:
        counters = [
            Counter("c", u, "", 3, None, "x", n, 0, 1000, None, AT - timedelta(hours=1))
            for u, n in values.items()
        ]
        now = {c.unit: ValueAt(c.value, c.last_event_at) for c in counters}
        return [
            Judged(v, campaign)
            for v in judge_many(campaign, counters, now, dict.fromkeys(values, 0), AT).values()
        ]

    def judge(values: dict[str, int], open_: dict[AlertKey, asyncpg.Record], w: Written) -> Any:
        return judge_alerts(
            judged(values), {"c": campaign}, {"c": policy}, policy, open_, {}, AT, True, w
        )

    first = judge({"a": 10, "b": 20}, {}, Written())
    open_ = {
        AlertKey(t.key, t.rule.value): _row(i, "firing", 30, t.details)
        for i, t in enumerate(first.todo)
    }
    assert open_  # both lag: behind and at_risk
    written = Written()
    assert judge({"a": 10, "b": 20}, open_, written).touched == []  # stored figures: same
    moved = judge({"a": 11, "b": 20}, open_, written).touched
    assert {t.details["value"] for t in moved} == {11}
    assert {t.alert_id for t in moved} == {r["id"] for k, r in open_.items() if k.key.unit == "a"}
    # written: the rows' new version (and figures), and this replica's memory of them
    written.wrote({t.alert_id: 2 for t in moved}, {t.alert_id: t.details for t in moved})
    fresh = {t.alert_id: t.payload for t in moved}
    open_ = {k: _rewritten(r, 2, fresh.get(r["id"])) for k, r in open_.items()}
    assert judge({"a": 11, "b": 20}, open_, written).touched == []
    # another replica wrote a's alerts since (version 3, its value 12): compared with what
    # it stored, not with what this replica remembers
    other = {t.alert_id: t.payload.replace('"value": 11', '"value": 12') for t in moved}
    open_ = {k: _rewritten(r, 3, other.get(r["id"])) for k, r in open_.items()}
    assert {t.details["value"] for t in judge({"a": 11, "b": 20}, open_, written).touched} == {11}


def _rewritten(row: asyncpg.Record, version: int, payload: str | None) -> asyncpg.Record:
    if payload is None:
        return row
    return cast(asyncpg.Record, {**row, "version": version, "details": payload})
