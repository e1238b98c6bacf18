"""The comparisons of `tiendo check`, as pure functions over plain data."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.notifier.repository.alerts import AlertKey
from tiendo.counting import Key, ValueAt
from tiendo.pace import Progress

OpenAlerts = Mapping[AlertKey, str]  # → state


@dataclass(frozen=True, slots=True, order=True)
class Disagreement:
    kind: str  # live_vs_history, alert_without_condition, condition_without_alert, bottom_rank
    campaign: str
    unit: str
    indicator: str
    detail: str
    # what the notifier's side showed (an alert's figures): one whose figures moved between
    # the rounds is being kept up, however busy its key
    shown: str = ""

    @classmethod
    def on(cls, kind: str, key: Key, detail: str, shown: str = "") -> "Disagreement":
        return cls(kind, key.campaign_id, key.unit, key.indicator, detail, shown)

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


def alerts_vs_board(held: Mapping[AlertKey, bool], open_alerts: OpenAlerts) -> list[Disagreement]:
    """An open alert (pending or firing) whose condition does not hold on the board, or a
    condition that holds with no open alert. `held` has every judged (key, rule)."""
    out: list[Disagreement] = []
    for alert, holds in held.items():
        state = open_alerts.get(alert)
        if holds and state is None:
            out.append(
                Disagreement.on(
                    "condition_without_alert", alert.key, f"{alert.rule} holds, no alert open"
                )
            )
        elif not holds and state is not None:
            out.append(
                Disagreement.on(
                    "alert_without_condition",
                    alert.key,
                    f"{alert.rule} is {state}, the board says not",
                )
            )
    judged = {a.key for a in held}
    for alert, state in open_alerts.items():
        if alert.rule != "bottom_rank" and alert.key not in judged:
            out.append(
                Disagreement.on(
                    "alert_without_condition",
                    alert.key,
                    f"{alert.rule} is {state} on a key the board does not judge",
                )
            )
    return out


def figures_vs_board(
    board: Mapping[Key, Progress], shown: Mapping[AlertKey, Any]
) -> list[Disagreement]:
    """The figures an open alert shows (its last evaluation's) against the board's now."""
    out: list[Disagreement] = []
    for alert, details in sorted(shown.items()):
        figures = board.get(alert.key)
        if figures is None:
            continue  # a key the board does not judge: `alerts_vs_board` reports it
        value, target = details.get("value"), details.get("target")
        if (value, target) != (figures.value, figures.target):
            out.append(
                Disagreement.on(
                    "alert_figures",
                    alert.key,
                    f"{alert.rule} shows {value}/{target}, "
                    f"the board {figures.value}/{figures.target}",
                    shown=f"{alert.rule} {value}/{target}",
                )
            )
    return out


def ranks_vs_board(expected: Iterable[Key], firing: Iterable[Key]) -> list[Disagreement]:
    """The firing bottom_rank alerts against the board's bottom N."""
    want, have = set(expected), set(firing)
    return [
        Disagreement.on("bottom_rank", k, "in the board's bottom N, no alert")
        for k in sorted(want - have)
    ] + [
        Disagreement.on("bottom_rank", k, "alert firing, not in the board's bottom N")
        for k in sorted(have - want)
    ]


def persistent(first: Iterable[Disagreement], second: Iterable[Disagreement]) -> list[Disagreement]:
    """Disagreements seen in both rounds: one that a notifier pass in between settled was
    only the evaluation's lag, not a disagreement; so was an alert whose figures moved in
    between (a key receiving events all along: each round sees the notifier a few events
    behind the board, never stuck)."""
    again = {(d.kind, d.campaign, d.unit, d.indicator, d.shown) for d in second}
    return sorted(d for d in first if (d.kind, d.campaign, d.unit, d.indicator, d.shown) in again)


def _when(at: datetime | None) -> str:
    return at.isoformat() if at is not None else "never"
