"""The `behind` rule and the alert lifecycle, as pure functions."""

from datetime import UTC, datetime, timedelta

from services.notifier.rules import Alert, AlertState, Change, step
from tests.support.judging import Unit, behind, unit

START = datetime(2023, 5, 10, tzinfo=UTC)
DEADLINE = START + timedelta(days=50)
T0 = START + timedelta(days=25)  # halfway: expected 500 of 1000


def state(value: int, target: int = 1000) -> Unit:
    return unit(value, target, START, DEADLINE, None)


def test_behind_holds_below_the_threshold_only() -> None:
    assert behind(state(449), T0).holds
    assert not behind(state(450), T0).holds
    assert behind(state(449), T0).pace == 449 / 500


def test_done_units_and_campaigns_not_started_are_never_behind() -> None:
    assert not behind(state(1000), DEADLINE + timedelta(days=1)).holds
    assert not behind(state(0), START).holds
    assert not behind(state(0), START - timedelta(days=1)).holds


def test_a_silent_unit_falls_behind_as_time_passes() -> None:
    s = state(450)
    assert not behind(s, T0).holds
    assert behind(s, T0 + timedelta(days=3)).holds


def test_fires_at_once_without_for_duration() -> None:
    alert, change = step(None, True, T0, timedelta(0))
    assert change is Change.FIRED
    assert alert == Alert(AlertState.FIRING, since=T0, fired_at=T0)


def test_for_duration_keeps_it_pending_then_fires() -> None:
    for_ = timedelta(hours=2)
    alert, change = step(None, True, T0, for_)
    assert change is Change.OPENED
    alert, change = step(alert, True, T0 + timedelta(hours=1), for_)
    assert change is Change.NONE
    assert alert is not None
    assert alert.state is AlertState.PENDING
    alert, change = step(alert, True, T0 + timedelta(hours=2), for_)
    assert change is Change.FIRED
    assert alert is not None
    assert alert.since == T0


def test_pending_that_clears_is_dropped_without_notice() -> None:
    alert, _ = step(None, True, T0, timedelta(hours=2))
    alert, change = step(alert, False, T0 + timedelta(hours=1), timedelta(hours=2))
    assert (alert, change) == (None, Change.DROPPED)


def test_firing_that_clears_resolves_once() -> None:
    alert, _ = step(None, True, T0, timedelta(0))
    alert, change = step(alert, False, T0 + timedelta(days=1), timedelta(0))
    assert change is Change.RESOLVED
    assert alert is not None
    assert alert.resolved_at == T0 + timedelta(days=1)
    _, change = step(alert, False, T0 + timedelta(days=2), timedelta(0))
    assert change is Change.NONE


def test_firing_that_still_holds_changes_nothing() -> None:
    alert, _ = step(None, True, T0, timedelta(0))
    assert step(alert, True, T0 + timedelta(days=1), timedelta(0)) == (alert, Change.NONE)
