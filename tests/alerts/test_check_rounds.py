"""`tiendo check` reports what both of its rounds see (docs/check.md): an alert whose
figures lag the board's in both rounds is reported only if they did not move in between;
figures that moved are the notifier keeping up with a busy key."""

from hypothesis import given
from hypothesis import strategies as st

from services.check.compare import figures_vs_board, persistent
from services.notifier.repository.alerts import AlertKey
from tiendo.counting import Key
from tiendo.pace import Progress, Status

KEY = Key("c1", "00316", "cccd_collected")
ALERT = AlertKey(KEY, "behind")


def board(value: int) -> dict[Key, Progress]:
    return {
        KEY: Progress(
            value=value,
            baseline=0,
            target=1448,
            pct=value / 1448,
            expected=900.0,
            expected_pct=900 / 1448,
            pace=None,
            run_rate_7d=None,
            required_daily_rate=None,
            projected_completion=None,
            status=Status.BEHIND,
        )
    }


def shown(value: int) -> dict[AlertKey, dict[str, int]]:
    return {ALERT: {"value": value, "target": 1448}}


values = st.integers(0, 2000)


@given(shown1=values, board1=values, shown2=values, board2=values)
def test_an_alert_is_reported_only_when_its_figures_stuck_while_disagreeing(
    shown1: int, board1: int, shown2: int, board2: int
) -> None:
    first = figures_vs_board(board(board1), shown(shown1))
    second = figures_vs_board(board(board2), shown(shown2))
    reported = persistent(first, second)
    stuck = shown1 == shown2 and shown1 != board1 and shown2 != board2
    assert [d.kind for d in reported] == (["alert_figures"] if stuck else [])


def test_the_field_case_a_busy_key_three_events_behind_each_time_is_not_reported() -> None:
    # (as on make dev's demo: an at_risk alert showing 490 while the board said 494)
    first = figures_vs_board(board(490), shown(487))
    second = figures_vs_board(board(494), shown(490))
    assert (len(first), len(second), persistent(first, second)) == (1, 1, [])
    # and an alert left at 487 while the board moved on is
    stuck = figures_vs_board(board(497), shown(487))
    assert [str(d) for d in persistent(first, stuck)] == [
        "alert_figures: c1/00316/cccd_collected: behind shows 487/1448, the board 490/1448"
    ]
