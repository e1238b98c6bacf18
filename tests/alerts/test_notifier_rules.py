"""Rule edges, inhibition, escalation, grouping, silences and schedules: pure functions."""

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifier.policy import PolicyOverride, effective
from services.notifier.render import Renderer
from services.notifier.rules import (
    GroupState,
    Member,
    Rule,
    Silence,
    briefing_slot,
    digest_slot,
    escalation_level,
    inhibited_by,
    plan_group,
)
from services.notifier.settings import NotifierSettings
from tests.support.judging import Unit, conditions, unit
from tiendo.board.figures import Verdict, bottom, ranked
from tiendo.pace import Progress, Status

START = datetime(2023, 5, 10, tzinfo=UTC)
DEADLINE = START + timedelta(days=50)
T0 = START + timedelta(days=25)  # halfway: expected 500 of 1000


def state(value: int, *, last_event_at: datetime | None = T0, target: int = 1000) -> Unit:
    return unit(value, target, START, DEADLINE, last_event_at)


def verdict(s: Unit, at: datetime, ago: int | None, known: bool = True) -> dict[Rule, bool]:
    _, held = conditions(s, at, ago, known)
    return held


# --- stale / behind / at_risk ----------------------------------------------------------------


def test_stale_starts_strictly_after_stale_after_without_an_event() -> None:
    s = state(600, last_event_at=T0)
    assert not verdict(s, T0 + timedelta(hours=12), 400)[Rule.STALE]
    assert verdict(s, T0 + timedelta(hours=12, seconds=1), 400)[Rule.STALE]


def test_stale_counts_from_the_start_for_a_unit_that_never_reported() -> None:
    s = state(0, last_event_at=None)
    assert not verdict(s, START + timedelta(hours=12), None)[Rule.STALE]
    assert verdict(s, START + timedelta(hours=13), None)[Rule.STALE]


def test_a_silent_lagging_unit_is_stale_and_behind_and_told_only_stale() -> None:
    v = verdict(state(100, last_event_at=START), T0, 0)
    assert v[Rule.STALE]
    assert v[Rule.BEHIND]
    assert inhibited_by("behind", ["stale"]) == "stale"
    assert inhibited_by("at_risk", ["behind", "bottom_rank"]) == "behind"
    assert inhibited_by("stale", ["behind", "at_risk"]) is None
    assert inhibited_by("bottom_rank", ["stale"]) is None


def test_an_inhibited_firing_alert_is_left_out_of_messages_until_it_is_not() -> None:
    members = [m(1, notified=True), m(2, inhibited=True)]
    plan = plan_group(GroupState(1, 1, T0, 0), members, T0 + REPEAT, WAIT, REPEAT)
    assert (plan.kind, plan.firing) == ("repeat", (1,))
    freed = plan_group(GroupState(1, 1, T0, 0), [m(2)], T0 + WAIT, WAIT, REPEAT)
    assert (freed.kind, freed.firing, freed.new) == ("firing", (2,), (2,))


def test_behind_edge_is_the_threshold() -> None:
    assert verdict(state(449), T0, 0)[Rule.BEHIND]
    assert not verdict(state(450), T0, 0)[Rule.BEHIND]


def test_at_risk_when_the_run_rate_projects_past_the_deadline() -> None:
    # 500 done, 7 days ago 400: 100/7 per day leaves 500 for 35 days > 25 left.
    assert verdict(state(500), T0, 400)[Rule.AT_RISK]
    # 7 days ago 250: 250/7 per day finishes in 14 days.
    assert not verdict(state(500), T0, 250)[Rule.AT_RISK]


def test_at_risk_when_nothing_moved_in_the_window() -> None:
    assert verdict(state(500), T0, 500)[Rule.AT_RISK]


def test_at_risk_is_not_judged_without_history() -> None:
    assert not verdict(state(500), T0, None, known=False)[Rule.AT_RISK]


def test_done_units_and_campaigns_not_started_raise_nothing() -> None:
    assert not any(verdict(state(1000), T0, 0).values())
    assert not any(verdict(state(1000), DEADLINE + timedelta(days=3), 0).values())
    assert not any(verdict(state(0, last_event_at=None), START, None).values())
    assert not any(verdict(state(0, last_event_at=None), START - timedelta(days=1), None).values())


@given(
    value=st.integers(0, 2000),
    hours=st.integers(-48, 60 * 24),
    ago=st.integers(0, 2000),
    quiet=st.integers(0, 100),
)
def test_nothing_holds_for_a_done_unit_and_stale_matches_the_board(
    value: int, hours: int, ago: int, quiet: int
) -> None:
    at = START + timedelta(hours=hours)
    s = state(value, last_event_at=at - timedelta(hours=quiet))
    p, v = conditions(s, at, min(ago, value), True)
    if value >= 1000:
        assert not any(v.values())
    # the board's status, while the campaign runs; after its deadline nothing holds
    assert v[Rule.STALE] == (p.status.value == "stale" and at < DEADLINE)
    if at >= DEADLINE:
        assert not any(v.values())
    if v[Rule.BEHIND]:
        assert p.status.value in ("stale", "behind")


# --- escalation --------------------------------------------------------------------------------


def test_escalation_one_level_per_full_period_up_to_the_limit() -> None:
    day2 = timedelta(hours=48)
    assert escalation_level(T0, T0 + day2 - timedelta(seconds=1), day2, 2) == 0
    assert escalation_level(T0, T0 + day2, day2, 2) == 1
    assert escalation_level(T0, T0 + 2 * day2, day2, 2) == 2
    assert escalation_level(T0, T0 + 10 * day2, day2, 2) == 2
    assert escalation_level(T0, T0 + 10 * day2, timedelta(0), 2) == 0


# --- grouping --------------------------------------------------------------------------------

WAIT = timedelta(seconds=30)
REPEAT = timedelta(hours=24)


def m(
    alert_id: int,
    state: str = "firing",
    notified: bool = False,
    *,
    level: int = 0,
    at: datetime = T0,
    mute: bool = False,
    inhibited: bool = False,
) -> Member:
    return Member(alert_id, level, state, at, notified, mute, inhibited)


def test_a_change_waits_for_group_wait_then_lists_every_firing_alert() -> None:
    members = [m(1), m(2, at=T0 + timedelta(seconds=10))]
    early = plan_group(GroupState(), members, T0 + timedelta(seconds=29), WAIT, REPEAT)
    assert early.kind is None
    assert early.due_at == T0 + WAIT
    plan = plan_group(GroupState(), members, T0 + WAIT, WAIT, REPEAT)
    assert (plan.kind, plan.key, plan.firing, plan.new) == ("firing", "1", (1, 2), (1, 2))
    assert plan.group == GroupState(1, 1, T0 + WAIT, 0)


def test_repeats_once_per_full_interval_after_the_last_change_message() -> None:
    group = GroupState(1, 1, T0, 0)
    members = [m(1, notified=True), m(2, notified=True)]
    assert plan_group(group, members, T0 + REPEAT - timedelta(seconds=1), WAIT, REPEAT).kind is None
    plan = plan_group(group, members, T0 + REPEAT, WAIT, REPEAT)
    assert (plan.kind, plan.key) == ("repeat", "1.r1")
    assert (
        plan_group(plan.group, members, T0 + REPEAT + timedelta(hours=5), WAIT, REPEAT).kind is None
    )
    # down for three days: one repeat for the latest slot, not three
    late = plan_group(plan.group, members, T0 + 4 * REPEAT, WAIT, REPEAT)
    assert (late.kind, late.key) == ("repeat", "1.r4")


def test_resolution_of_a_told_alert_is_said_once_and_the_rest_still_listed() -> None:
    group = GroupState(1, 1, T0, 0)
    members = [m(1, "resolved", notified=True, at=T0 + timedelta(hours=1)), m(2, notified=True)]
    plan = plan_group(group, members, T0 + timedelta(hours=1) + WAIT, WAIT, REPEAT)
    assert (plan.kind, plan.firing, plan.resolved, plan.drop) == ("firing", (2,), (1,), (1,))


def test_all_resolved_makes_a_resolved_notice() -> None:
    group = GroupState(3, 3, T0, 0)
    members = [m(1, "resolved", notified=True), m(2, "resolved", notified=True)]
    plan = plan_group(group, members, T0 + WAIT, WAIT, REPEAT)
    assert (plan.kind, plan.key, plan.firing, plan.resolved) == ("resolved", "4", (), (1, 2))


def test_an_alert_resolved_before_anyone_was_told_is_dropped_silently() -> None:
    plan = plan_group(GroupState(), [m(1, "resolved", notified=False)], T0 + WAIT, WAIT, REPEAT)
    assert (plan.kind, plan.drop) == (None, (1,))


def test_silenced_alerts_make_no_message_and_are_left_out() -> None:
    members = [m(1, mute=True), m(2, notified=True)]
    assert plan_group(GroupState(1, 1, T0, 0), members, T0 + WAIT, WAIT, REPEAT).kind is None
    repeat = plan_group(GroupState(1, 1, T0, 0), members, T0 + REPEAT, WAIT, REPEAT)
    assert repeat.firing == (2,)


def test_silence_matches_the_unit_subtree_until_its_end() -> None:
    s = Silence(1, T0, T0 + timedelta(days=1), campaign_id="c", unit="002")
    lineage = ["00010", "002", "01"]
    assert s.matches("c", lineage, "cccd_collected", "behind", T0)
    assert not s.matches("c", ["00004", "001", "01"], "cccd_collected", "behind", T0)
    assert not s.matches("other", lineage, "cccd_collected", "behind", T0)
    assert not s.matches("c", lineage, "cccd_collected", "behind", T0 + timedelta(days=1))
    rule_only = Silence(2, T0, T0 + timedelta(days=1), rule="stale")
    assert not rule_only.matches("c", lineage, "x", "behind", T0)
    assert rule_only.matches("c", lineage, "x", "stale", T0)


# --- bottom rank and schedules ---------------------------------------------------------------


def _verdict(unit: str, pct: float | None, pace: float | None) -> Verdict:
    # of a target of 100: the value is the pct
    value = round(pct) if pct is not None else 0
    progress = Progress(value, 0, 100, pct, 0.0, None, pace, None, None, None, Status.ON_TRACK)
    return Verdict("c", unit, unit, 3, None, "cccd_collected", DEADLINE, progress, None)


def test_the_board_ranks_ties_by_pace_then_code_and_bottom_skips_done_units() -> None:
    # the one ranking every reader uses (tiendo.board): leaderboard API and bottom_rank
    board = ranked(
        [
            _verdict("b", 40.0, 0.8),
            _verdict("a", 40.0, 0.8),
            _verdict("c", 40.0, 0.9),
            _verdict("d", 100.0, 1.0),
            _verdict("e", None, None),
        ]
    )
    assert [v.unit for v in board] == ["d", "c", "a", "b", "e"]
    assert [(rank, v.unit) for rank, v in bottom(board, 2)] == [(4, "b"), (5, "e")]
    assert bottom(ranked([_verdict("d", 100.0, 1.0)]), 5) == []


def test_briefing_slot_is_the_latest_monday_morning_in_the_campaign_timezone() -> None:
    tz = "Asia/Ho_Chi_Minh"
    monday_8 = datetime(2023, 5, 15, 1, 0, tzinfo=UTC)  # 08:00 +07
    assert briefing_slot(monday_8, tz, 0, time(8)) == monday_8
    assert briefing_slot(monday_8 - timedelta(seconds=1), tz, 0, time(8)) == monday_8 - timedelta(
        days=7
    )
    assert briefing_slot(monday_8 + timedelta(days=3), tz, 0, time(8)) == monday_8


def test_digest_slots_at_local_times_with_grace() -> None:
    tz = "Asia/Ho_Chi_Minh"
    times = (time(7), time(17))
    seven = datetime(2023, 5, 15, 0, 0, tzinfo=UTC)  # 07:00 +07
    assert digest_slot(seven, tz, times, timedelta(hours=1)) == seven
    assert digest_slot(seven + timedelta(minutes=59), tz, times, timedelta(hours=1)) == seven
    assert digest_slot(seven + timedelta(hours=2), tz, times, timedelta(hours=1)) is None
    assert digest_slot(seven - timedelta(minutes=1), tz, times, timedelta(hours=1)) is None
    just_after_midnight = datetime(2023, 5, 14, 17, 30, tzinfo=UTC)  # 00:30 +07
    assert digest_slot(just_after_midnight, tz, times, timedelta(hours=8)) == datetime(
        2023, 5, 14, 10, 0, tzinfo=UTC
    )


# --- policy and templates --------------------------------------------------------------------


def test_a_campaign_override_changes_only_what_it_names() -> None:
    settings = NotifierSettings()
    override = PolicyOverride.model_validate(
        {"behind": {"for_seconds": 3600}, "language": "en", "digest_times": ["06:30"]}
    )
    policy = effective(settings, override.config())
    assert policy.behind.enabled
    assert policy.behind.for_seconds == 3600
    assert policy.at_risk.for_seconds == settings.at_risk_for_seconds
    assert policy.language == "en"
    assert policy.digest_clock() == (time(6, 30),)
    assert policy.repeat_interval == timedelta(days=1)
    assert policy.escalate_after == timedelta(days=2)


def test_bad_overrides_are_refused() -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        PolicyOverride.model_validate({"digest_times": ["7am"]})
    with pytest.raises(ValueError, match="extra"):
        PolicyOverride.model_validate({"behind": {"for": 3}})


def _alert_model(kind: str) -> dict[str, Any]:
    alert = {
        "alert_id": 1,
        "rule": "behind",
        "rule_text": "x",
        "unit": "00010",
        "unit_name": "Phường Hàng Buồm",
        "indicator": "cccd_collected",
        "indicator_name": "Thu nhận hồ sơ CCCD",
        "state": "firing",
        "since": "2023-05-20T03:00:00+00:00",
        "fired_at": "2023-05-20T03:00:00+00:00",
        "resolved_at": None,
        "escalation_level": 1,
        "new": True,
        "value": 1234,
        "target": 5000,
        "pct": 24.68,
        "expected": 2000.0,
        "pace": 0.617,
        "required_daily_rate": 125.4,
        "run_rate_7d": None,
        "projected_completion": None,
        "rank": None,
        "of_units": None,
        "campaign_ended": kind == "final",
        "deadline_passed": kind in ("final", "deadline"),
        "achieved": False,
        "shortfall": 3766 if kind in ("final", "deadline") else None,
        # closed without clearing: its target removed, its unit replaced at a cut-over
        "closed_because": kind if kind in ("untracked", "replaced") else None,
        "replaced_at": "2023-05-21T17:00:00+00:00" if kind == "replaced" else None,
        "successors": [{"unit": "00007", "code": "00007", "name": "Phường Trúc Bạch"}]
        if kind == "replaced"
        else [],
    }
    closing = ("resolved", "final", "deadline", "untracked", "replaced")
    return {
        "kind": "resolved" if kind in closing else kind,
        "campaign_ended": kind == "final",
        "message_id": "c1/002/1",
        "campaign": {"id": "c1", "name": "Mệnh lệnh 01", "timezone": "Asia/Ho_Chi_Minh"},
        "recipient": {"unit": "002", "name": "Quận Hoàn Kiếm", "chief_name": None},
        "firing": [alert] if kind not in closing else [],
        "resolved": [alert] if kind in closing else [],
        "now": "2023-05-22T03:00:00+00:00",
        "language": "vi",
    }


@pytest.mark.parametrize(
    "kind", ["firing", "repeat", "resolved", "final", "deadline", "untracked", "replaced"]
)
@pytest.mark.parametrize("language", ["vi", "en"])
def test_every_template_renders_in_both_languages(kind: str, language: str) -> None:
    text = Renderer().alert(language, _alert_model(kind))
    assert "Phường Hàng Buồm" in text.text
    assert "c1/002/1" in text.text
    assert "c1/002/1" in text.chat
    assert text.subject.startswith("[tiendo]")
    if kind == "final":
        # the campaign's end: the final word on each alert, achieved or by how much not
        assert ("còn thiếu 3.766" if language == "vi" else "missed by 3,766") in text.text
        assert ("Kết thúc đợt" if language == "vi" else "Campaign ended") in text.subject
        assert ("thiếu 3.766" if language == "vi" else "missed by 3,766") in text.chat
    if kind == "deadline":
        # a unit's own deadline, before the campaign's: the final word on it, never "back
        # on track"
        assert ("còn thiếu 3.766" if language == "vi" else "missed by 3,766") in text.text
        assert ("Qua hạn chót" if language == "vi" else "Deadline passed") in text.subject
        assert ("thiếu 3.766" if language == "vi" else "missed by 3,766") in text.chat
        for said in (text.text, text.subject, text.chat):
            assert ("đúng tiến độ" if language == "vi" else "back on track") not in said
            assert ("hết cảnh báo" if language == "vi" else "all clear") not in said.lower()
    if kind == "resolved":
        assert ("đúng tiến độ" if language == "vi" else "back on track") in text.text
    if kind in ("untracked", "replaced"):
        # closed because nothing judges it any more: why, never "back on track"
        for said in (text.text, text.subject, text.chat):
            assert ("đúng tiến độ" if language == "vi" else "back on track") not in said
        assert ("Không còn theo dõi:" if language == "vi" else "No longer tracked:") in text.text
    if kind == "untracked":
        assert ("không còn chỉ tiêu" if language == "vi" else "no target") in text.text
        assert ("không còn chỉ tiêu" if language == "vi" else "no target") in text.chat
    if kind == "replaced":
        successor = "Phường Trúc Bạch (00007)"
        said = "đã được thay bằng " if language == "vi" else "replaced by "
        assert said + successor in text.text
        assert "00:00 22/05/2023" in text.text  # the cut-over, local
        assert "Phường Trúc Bạch" in text.chat
    if kind not in ("resolved", "final", "deadline", "untracked", "replaced"):
        assert ("1.234/5.000" if language == "vi" else "1,234 of 5,000") in text.text
        assert ("125/ngày" if language == "vi" else "125/day") in text.text
        assert ("10:00 20/05/2023") in text.text


def test_vietnamese_is_the_default_language() -> None:
    assert NotifierSettings().language == "vi"
    rules, statuses = Renderer().words("vi")
    assert rules["behind"] == "chậm tiến độ"
    assert statuses["done"] == "đã về đích"
