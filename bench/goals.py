"""Issue 15's goals, each read from one run's results beside its same-run ceiling: the
figure, the goal, the ceiling, their ratio and whether the goal is met. `judge` is what
bench/results/latest.json carries under "goals" and what the README's table shows."""

from dataclasses import dataclass, replace
from typing import Any

Path = tuple[str, ...]


@dataclass(frozen=True)
class Goal:
    key: str
    text: str
    figure: Path
    unit: str
    bound: float
    # True: the figure must stay under `bound` (a latency); False: reach it (a rate)
    under: bool
    ceiling: Path | None = None
    ceiling_text: str = ""
    # a goal on the ratio to the ceiling too (the apply's 0.15 × bare consume)
    ratio_at_least: float | None = None


def scaled(goal: Goal, text: str) -> Goal:
    """The same goal for the scale-out phase's figure (results["<figure>_scaled"])."""
    figure = (f"{goal.figure[0]}_scaled", *goal.figure[1:])
    return replace(goal, key=f"{goal.key}_scaled", text=text, figure=figure)


BARE_READ_LOADED = ("reads", "under_load", "viewers", "ceiling_bare_pk_read", "p99_ms")
BARE_CONSUME = ("ceiling_bare_consume", "events_per_second")


def read_alone(
    key: str,
    text: str,
    read: str,
    bound: float,
    ceiling: str = "ceiling_bare_pk_read",
    ceiling_text: str = "one progress row by primary key, alone, p99",
) -> Goal:
    """A read's p99 alone under `bound` ms, against a bare read of the same rounds."""
    return Goal(
        key,
        text,
        ("reads", "alone", read, "p99_ms"),
        "ms",
        bound,
        True,
        ("reads", "alone", ceiling, "p99_ms"),
        ceiling_text,
    )


GOALS = (
    read_alone(
        "live_country_alone",
        "live progress of the country, alone: p99 < 50 ms",
        "live_country",
        50,
    ),
    Goal(
        "live_country_under_load",
        "live progress of the country under 50 viewers and 5,000 events/s: p99 < 100 ms",
        ("reads", "under_load", "viewers", "live_country", "p99_ms"),
        "ms",
        100,
        True,
        BARE_READ_LOADED,
        "one progress row by primary key, same load, p99",
    ),
    read_alone(
        "as_of_country",
        "`as_of` of the country at noon of a past day, alone: p99 < 300 ms",
        "as_of_country",
        300,
        "ceiling_bare_half_day_of_events",
        "the half day of events it reads, summed in place, p99",
    ),
    read_alone(
        "leaderboard_communes",
        "live leaderboard of every commune (10,236), alone: p99 < 300 ms",
        "leaderboard_communes_live",
        300,
        "ceiling_bare_leaderboard_rows",
        "the communes' counters and the week of day rollups it reads, summed in place, p99",
    ),
    Goal(
        "freshness_with_readers",
        "freshness at 5,000 events/s beside 50 viewers (acceptance → visible): p99 < 1 s",
        ("reads", "freshness", "p99_seconds"),
        "s",
        1,
        True,
        ("reads", "freshness", "ceiling_p99_seconds_without_readers"),
        "the same writer without readers, p99",
    ),
    Goal(
        "freshness_through_kafka",
        "freshness at 5,000 events/s through ingest, Kafka and one aggregator: p99 < 1 s",
        ("freshness", "p99_seconds"),
        "s",
        1,
        True,
    ),
    APPLY := Goal(
        "apply",
        "apply, exactly once, one aggregator: ≥ 30,000 events/s and ≥ 0.15 × bare consume",
        ("aggregator_apply", "events_per_second"),
        "events/s",
        30_000,
        False,
        BARE_CONSUME,
        "bare aiokafka `getmany` loop",
        0.15,
    ),
    scaled(APPLY, "the same with the scale-out's aggregator replicas"),
    INGEST := Goal(
        "ingest_sustained",
        "ingest at 20,000 events/s, one process: p99 < 50 ms per 1,000-event batch",
        ("ingest_sustained", "batch_p99_ms"),
        "ms",
        50,
        True,
    ),
    scaled(INGEST, "the same with the scale-out's ingest processes behind one port"),
)


def dig(results: dict[str, Any], path: Path) -> Any:
    """The value at `path` in the results, None where a phase did not run."""
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def ratio(figure: float, ceiling: float) -> float:
    """figure / ceiling, with two significant digits or more (8.3, 0.15, 120)."""
    r = figure / ceiling
    return round(r, 2) if r < 10 else round(r, 1) if r < 100 else round(r)


def judge(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every goal whose figure the run measured, with its ceiling, ratio and verdict."""
    out = []
    for goal in GOALS:
        figure = dig(results, goal.figure)
        if not isinstance(figure, int | float):
            continue
        ceiling = dig(results, goal.ceiling) if goal.ceiling else None
        r = ratio(figure, ceiling) if isinstance(ceiling, int | float) and ceiling > 0 else None
        met = figure < goal.bound if goal.under else figure >= goal.bound
        if goal.ratio_at_least is not None:
            met = met and r is not None and r >= goal.ratio_at_least
        out.append(
            {
                "goal": goal.key,
                "text": goal.text,
                "figure": figure,
                "unit": goal.unit,
                "bound": goal.bound,
                "ceiling": ceiling,
                "ceiling_of": goal.ceiling_text or None,
                "ratio": r,
                "ratio_at_least": goal.ratio_at_least,
                "met": met,
            }
        )
    return out
