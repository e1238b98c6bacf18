"""The comparisons of `tiendo check`, as pure functions over plain data."""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from itertools import groupby
from typing import Any

import asyncpg

from services.notifier.repository.alerts import AlertKey
from tiendo.board.campaign import Campaign
from tiendo.board.figures import Verdict, is_judged, moments_at, ranked
from tiendo.counting import Key, ValueAt
from tiendo.pace import Progress, assess_at

OpenAlerts = Mapping[AlertKey, str]  # → state


@dataclass(frozen=True, slots=True, order=True)
class Disagreement:
    # live_vs_history, alert_without_condition, condition_without_alert, alert_figures,
    # bottom_rank; of the stored board figures: board_figures (a field), board_children,
    # board_missing (a judged key not stored), board_unjudged (a key stored, not judged),
    # board_stale (no snapshot rewrote them between the rounds); of the aggregator's
    # exported figures (services/check/metrics.py): metrics_figures, metrics_missing,
    # metrics_unjudged
    kind: str
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


# -- the boards' stored figures (`board_figures`) against a fresh judgement ---------------


@dataclass(frozen=True, slots=True)
class BoardRow:
    """One key's figures as a board shows them: a `board_figures` row, or what the
    judgement would have stored (`as_stored`). Every field is compared exactly."""

    level: int
    unit_name: str
    parent_code: str | None
    value: int
    baseline: int
    target: int
    expected: float
    pct: float | None
    pace: float | None
    run_rate_7d: float | None
    required_daily_rate: float | None
    projected_completion: datetime | None
    status: str
    last_event_at: datetime | None
    deadline: datetime
    rank: int
    # not a figure: why the judgement's run rate is what it is (see `as_stored`)
    note: str = field(default="", compare=False)

    @classmethod
    def from_record(cls, r: "asyncpg.Record") -> "BoardRow":
        return cls(*(r[name] for name in BOARD_FIELDS))


BOARD_FIELDS = tuple(f.name for f in fields(BoardRow) if f.name != "note")
# A window start value (see `as_stored`): (the fresh one, the lowest and the highest the
# snapshot's reuse of an earlier pass's could have been)
WindowStart = tuple[int, int, int]


def as_stored(
    campaign: Campaign,
    verdicts: Sequence[Verdict],
    at: datetime,
    stored: Mapping[Key, BoardRow],
    window: Mapping[Key, WindowStart],
) -> dict[Key, BoardRow]:
    """The rows the snapshot of `at` should have stored for `verdicts` (a fresh
    `judge_campaign` of `at`): the keys the campaign judges, ranked per (indicator,
    level) as `store_board_figures` and the leaderboard rank them.

    Every figure is the verdict's but where the snapshot may reuse a value: the one each
    unit had one run-rate window ago, kept from a pass up to the aggregator's
    `METRICS_WINDOW_REFRESH_SECONDS` earlier (`tiendo.board.window.WindowValues`), so the
    window it started had that pass's start, a few minutes before this one's. Only
    `run_rate_7d`, `projected_completion` and, through the projection, `status`
    (`at_risk` or `on_track`) are derived from it. So the start value the stored run rate
    implies (the judged value − the stored rate × the window, rounded: a start value is a
    whole number) is worked out, and if the unit really had it at one of those earlier
    starts (`window`: between the lowest and the highest, read from the day rollups as the
    snapshot reads them), those three figures are derived again from it by the same
    `assess_at` and compared exactly (a rate no whole start value gives still disagrees);
    any other start value is compared with the fresh one. Everything else (value, target,
    plan, pct, pace, required rate, last event, status but for that, rank) does not depend
    on the window and is the verdict's exactly."""
    when = moments_at(campaign, at)
    out: dict[Key, BoardRow] = {}

    def board(v: Verdict) -> tuple[str, int]:
        return (v.indicator, v.level)

    judged = sorted(
        (
            v
            for v in verdicts
            if v.indicator in campaign.indicators and is_judged(v.progress.target)
        ),
        key=board,
    )
    for _, leaderboard in groupby(judged, key=board):
        for rank, v in enumerate(ranked(list(leaderboard)), start=1):
            p, note = v.progress, ""
            row, start = stored.get(v.key), window.get(v.key)
            moment = when(v.deadline)
            if (
                row is not None
                and start is not None
                and row.run_rate_7d is not None
                and p.run_rate_7d is not None
                and moment.window_days is not None
            ):
                fresh, lowest, highest = start
                # of the judged value: the rate a right snapshot stored is of the right one
                implied = p.value - row.run_rate_7d * moment.window_days
                ago = round(implied) if math.isfinite(implied) else None
                if ago is not None and ago != fresh and lowest <= ago <= highest:
                    p = assess_at(
                        moment,
                        p.baseline,
                        p.target,
                        p.value,
                        last_event_at=v.last_event_at,
                        value_window_ago=ago,
                        thresholds=campaign.thresholds,
                    )
                    note = f"window start {ago} (reused; fresh {fresh})"
                elif ago != fresh:
                    note = (
                        f"the stored run rate implies a window start of {implied:g}; "
                        f"the unit had {fresh} at it, {lowest}..{highest} at the starts "
                        f"of the window values the snapshot may reuse"
                    )
            out[v.key] = BoardRow(
                level=v.level,
                unit_name=v.unit_name,
                parent_code=v.parent,
                value=p.value,
                baseline=p.baseline,
                target=p.target,
                expected=p.expected,
                pct=p.pct,
                pace=p.pace,
                run_rate_7d=p.run_rate_7d,
                required_daily_rate=p.required_daily_rate,
                projected_completion=p.projected_completion,
                status=p.status.value,
                last_event_at=v.last_event_at,
                deadline=v.deadline,
                rank=rank,
                note=note,
            )
    return out


def board_vs_judgement(
    stored: Mapping[Key, BoardRow], judged: Mapping[Key, BoardRow]
) -> list[Disagreement]:
    """The stored figures of one campaign against what the judgement would have stored
    (`as_stored`): every field of every key, the children counts the unit board shows
    (`done / total` of the stored rows under it), a judged key not stored and a stored
    key not judged. What a disagreement shows (`shown`) is the stored figure: one that a
    later snapshot changed was the snapshot racing the events, not a fault."""
    out: list[Disagreement] = []
    for key in sorted(judged.keys() - stored.keys()):
        out.append(
            Disagreement.on(
                "board_missing",
                key,
                f"judged (target {judged[key].target}), not in board_figures",
            )
        )
    for key in sorted(stored.keys() - judged.keys()):
        out.append(
            Disagreement.on(
                "board_unjudged",
                key,
                f"in board_figures (target {stored[key].target}), "
                "a key the campaign does not judge",
            )
        )
    for key in sorted(stored.keys() & judged.keys()):
        have, want = stored[key], judged[key]
        for name in BOARD_FIELDS:
            a, b = getattr(have, name), getattr(want, name)
            if a != b:
                why = f" ({want.note})" if want.note and name in _WINDOWED else ""
                out.append(
                    Disagreement.on(
                        "board_figures",
                        key,
                        f"{name}: stored {_shown(a)}, the board {_shown(b)}{why}",
                        shown=f"{name} {_shown(a)}",
                    )
                )
    have_children, want_children = _children(stored), _children(judged)
    for key in sorted(stored.keys() & judged.keys()):
        a, b = have_children.get(key, (0, 0)), want_children.get(key, (0, 0))
        if a != b:
            out.append(
                Disagreement.on(
                    "board_children",
                    key,
                    f"children done/total: stored {a[0]}/{a[1]}, the board {b[0]}/{b[1]}",
                    shown=f"{a[0]}/{a[1]}",
                )
            )
    return out


# the figures derived from the value one run-rate window ago (see `as_stored`)
_WINDOWED = frozenset({"run_rate_7d", "projected_completion", "status"})


def _children(rows: Mapping[Key, BoardRow]) -> dict[Key, tuple[int, int]]:
    """(done, total) of the rows under each parent, as the unit board counts them: done
    by the stored status (the judgement's status is `done` exactly when `is_done`)."""
    out: dict[Key, tuple[int, int]] = {}
    for key, row in rows.items():
        if row.parent_code is None:
            continue
        parent = Key(key.campaign_id, row.parent_code, key.indicator)
        done, total = out.get(parent, (0, 0))
        out[parent] = (done + (row.status == "done"), total + 1)
    return out


def campaign_not_stored(campaign: str, judged: int) -> Disagreement:
    """A campaign that judges keys and has no row at all: left out of the boards whole."""
    return Disagreement(
        "board_missing",
        campaign,
        "*",
        "*",
        f"judges {judged} keys, none in board_figures (a campaign flagged unusable or "
        "whose judging fails is left out: tiendo_aggregator_campaign_unusable, "
        "_failing; or no snapshot pass yet)",
    )


def _shown(x: object) -> str:
    return x.isoformat() if isinstance(x, datetime) else repr(x) if isinstance(x, str) else str(x)
