"""Order independence (contract §5), proven on the pure model: any interleaving of the same
events, with any duplicates, gives the same counters as computing from scratch."""

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.counting.model import Ledger, Window, counted, own_values
from tiendo.event import Event, Kind

START = datetime(2023, 5, 10, tzinfo=UTC)
WINDOW = Window(START, START + timedelta(days=10))
UNITS = ("00004", "00007", "001")
SUBJECTS = tuple(f"{i:064x}" for i in range(6))


@st.composite
def events(draw: st.DrawFn) -> list[Event]:
    n = draw(st.integers(0, 40))
    out = []
    for i in range(n):
        kind = draw(st.sampled_from([Kind.INCREMENT, Kind.INCREMENT, Kind.SNAPSHOT]))
        # coarse times so that ties (same occurred_at) happen often
        at = START + timedelta(hours=draw(st.integers(-24, 12 * 24 + 24)) // 6 * 6)
        subject = None
        if kind is Kind.INCREMENT and draw(st.booleans()):
            value, subject = 1, draw(st.sampled_from(SUBJECTS))
        elif kind is Kind.INCREMENT:
            value = draw(st.integers(-3, 5).filter(bool))
        else:
            value = draw(st.integers(0, 50))
        out.append(
            Event(
                f"e{i}",
                draw(st.sampled_from(UNITS)),
                draw(st.sampled_from(["cccd_collected", "eid_activated_l2"])),
                kind,
                value,
                at,
                subject,
            )
        )
    return out


BASELINES = {("00004", "cccd_collected"): 7}


def _nonzero(values: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    return {k: v for k, v in values.items() if v or k in BASELINES}


@settings(max_examples=400)
@given(events(), st.randoms(use_true_random=False), st.data())
def test_any_interleaving_with_duplicates_matches_the_recomputation(
    evs: list[Event], rnd: random.Random, data: st.DataObject
) -> None:
    deliveries = evs + [e for e in evs if data.draw(st.booleans())]
    rnd.shuffle(deliveries)
    ledger = Ledger(WINDOW, BASELINES)
    for e in deliveries:
        ledger.apply(e)
    expected = own_values(evs, WINDOW, BASELINES, WINDOW.deadline)
    assert _nonzero(ledger.own_values()) == _nonzero(expected)
    assert ledger.counted_ids >= {e.event_id for e in counted(evs)} - {
        e.event_id for e in evs if e.kind is Kind.SNAPSHOT
    }


def e(
    i: str,
    unit: str,
    at_h: int,
    value: int = 1,
    kind: Kind = Kind.INCREMENT,
    subject: str | None = None,
) -> Event:
    return Event(i, unit, "cccd_collected", kind, value, START + timedelta(hours=at_h), subject)


def test_snapshot_replaces_what_came_before_and_keeps_what_came_after() -> None:
    evs = [e("a", "00004", 1, 5), e("s", "00004", 2, 100, Kind.SNAPSHOT), e("b", "00004", 3, 4)]
    assert own_values(evs, WINDOW, {}, WINDOW.deadline)[("00004", "cccd_collected")] == 104


def test_latest_snapshot_wins_ties_broken_by_event_id() -> None:
    evs = [e("s1", "00004", 2, 10, Kind.SNAPSHOT), e("s2", "00004", 2, 20, Kind.SNAPSHOT)]
    assert own_values(evs, WINDOW, {}, WINDOW.deadline)[("00004", "cccd_collected")] == 20


def test_a_late_earlier_subject_event_moves_the_count_to_its_unit() -> None:
    later = e("x", "00004", 5, subject=SUBJECTS[0])
    earlier = e("y", "00007", 3, subject=SUBJECTS[0])
    ledger = Ledger(WINDOW)
    ledger.apply(later)
    assert ledger.own_values()[("00004", "cccd_collected")] == 1
    ledger.apply(earlier)
    assert ledger.own_values()[("00004", "cccd_collected")] == 0
    assert ledger.own_values()[("00007", "cccd_collected")] == 1


def test_events_outside_the_window_do_not_count() -> None:
    evs = [e("a", "00004", -2), e("b", "00004", 11 * 24), e("c", "00004", 1)]
    assert own_values(evs, WINDOW, {}, WINDOW.deadline)[("00004", "cccd_collected")] == 1


def test_baseline_counts_until_the_first_snapshot() -> None:
    evs = [e("a", "00004", 1, 3)]
    assert own_values(evs, WINDOW, BASELINES, WINDOW.deadline)[("00004", "cccd_collected")] == 10
    evs.append(e("s", "00004", 2, 50, Kind.SNAPSHOT))
    assert own_values(evs, WINDOW, BASELINES, WINDOW.deadline)[("00004", "cccd_collected")] == 50


def test_as_of_sees_only_what_had_happened() -> None:
    evs = [e("a", "00004", 1, 3), e("b", "00004", 30, 4)]
    assert own_values(evs, WINDOW, {}, START + timedelta(hours=2))[("00004", "cccd_collected")] == 3
