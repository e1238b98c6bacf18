"""The comparisons of `tiendo check`, as pure functions over plain data."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tiendo.counting import ValueAt

Key = tuple[str, str, str]  # (campaign, unit, indicator)
OpenAlerts = Mapping[tuple[str, str, str, str], str]  # (campaign, unit, indicator, rule) → state


@dataclass(frozen=True, slots=True, order=True)
class Disagreement:
    kind: str  # live_vs_history, alert_without_condition, condition_without_alert, bottom_rank
    campaign: str
    unit: str
    indicator: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.campaign}/{self.unit}/{self.indicator}: {self.detail}"


def live_vs_history(
    campaign: str,
    indicator: str,
    live: Mapping[str, ValueAt],
    history: Mapping[str, ValueAt],
) -> list[Disagreement]:
    """Every unit whose live counter differs from its history (value or last event)."""
    out: list[Disagreement] = []
    for unit in sorted(set(live) | set(history)):
        a, b = live.get(unit, ValueAt(0, None)), history.get(unit, ValueAt(0, None))
        if (a.value, _when(a.last_event_at)) != (b.value, _when(b.last_event_at)):
            out.append(
                Disagreement(
                    "live_vs_history",
                    campaign,
                    unit,
                    indicator,
                    f"live {a.value} (last event {_when(a.last_event_at)}), "
                    f"history {b.value} (last event {_when(b.last_event_at)})",
                )
            )
    return out


def alerts_vs_board(
    held: Mapping[tuple[Key, str], bool], open_alerts: OpenAlerts
) -> list[Disagreement]:
    """An open alert (pending or firing) whose condition does not hold on the board, or a
    condition that holds with no open alert. `held` has every judged (key, rule)."""
    out: list[Disagreement] = []
    for (key, rule), holds in held.items():
        state = open_alerts.get((*key, rule))
        if holds and state is None:
            out.append(
                Disagreement("condition_without_alert", *key, f"{rule} holds, no alert open")
            )
        elif not holds and state is not None:
            out.append(
                Disagreement(
                    "alert_without_condition", *key, f"{rule} is {state}, the board says not"
                )
            )
    judged = {k for k, _ in held}
    for (campaign, unit, indicator, rule), state in open_alerts.items():
        if rule != "bottom_rank" and (campaign, unit, indicator) not in judged:
            out.append(
                Disagreement(
                    "alert_without_condition",
                    campaign,
                    unit,
                    indicator,
                    f"{rule} is {state} on a key the board does not judge",
                )
            )
    return out


def figures_vs_board(
    board: Mapping[Key, tuple[int, int]], shown: Mapping[tuple[str, str, str, str], Any]
) -> list[Disagreement]:
    """The figures an open alert shows (its last evaluation's) against the board's now."""
    out: list[Disagreement] = []
    for (campaign, unit, indicator, rule), details in sorted(shown.items()):
        figures = board.get((campaign, unit, indicator))
        if figures is None:
            continue  # a key the board does not judge: `alerts_vs_board` reports it
        alert = (details.get("value"), details.get("target"))
        if alert != figures:
            out.append(
                Disagreement(
                    "alert_figures",
                    campaign,
                    unit,
                    indicator,
                    f"{rule} shows {alert[0]}/{alert[1]}, the board {figures[0]}/{figures[1]}",
                )
            )
    return out


def ranks_vs_board(
    campaign: str, expected: Iterable[tuple[str, str]], firing: Iterable[tuple[str, str]]
) -> list[Disagreement]:
    """The firing bottom_rank alerts against the board's bottom N, as (unit, indicator)."""
    want, have = set(expected), set(firing)
    return [
        Disagreement("bottom_rank", campaign, u, i, "in the board's bottom N, no alert")
        for u, i in sorted(want - have)
    ] + [
        Disagreement("bottom_rank", campaign, u, i, "alert firing, not in the board's bottom N")
        for u, i in sorted(have - want)
    ]


def persistent(first: Iterable[Disagreement], second: Iterable[Disagreement]) -> list[Disagreement]:
    """Disagreements seen in both rounds: one that a notifier pass in between settled was
    only the evaluation's lag, not a disagreement."""
    again = {(d.kind, d.campaign, d.unit, d.indicator) for d in second}
    return sorted(d for d in first if (d.kind, d.campaign, d.unit, d.indicator) in again)


def _when(at: datetime | None) -> str:
    return at.isoformat() if at is not None else "never"
