"""docs/capacity.md's measured figures and the arithmetic on them, generated from one run's
results (`python -m bench.report --readme` rewrites the block between BLOCK's comments).

The national deployment sized: 34 provinces, 3,321 communes, a peak of 2,000,000 events a
day and 1,000 board viewers. What is measured comes from the results; what is derived is
arithmetic on it with the workload below, whose busiest-hour and burst shares are
estimates (docs/capacity.md says why)."""

from pathlib import Path
from typing import Any

from bench.goals import dig
from bench.reads import BOARD, REFRESH

DOC = Path(__file__).resolve().parent.parent / "docs" / "capacity.md"
BLOCK = ("<!-- bench-capacity:begin -->", "<!-- bench-capacity:end -->")
NOT_MEASURED = (
    "No full run is committed yet (`bench/results/latest.json`): run `make bench`, then"
    " `python -m bench.report --readme`, and commit both."
)

UNITS = 1 + 34 + 3_321
COMMUNES = 3_321
INDICATORS = 8
EVENTS_PER_DAY = 2_000_000
# [estimate] 20 % of a day's events in its busiest hour, bursts of 10 × that hour
BURST_EVENTS_PER_SECOND = 10 * 0.2 * EVENTS_PER_DAY / 3600
VIEWERS = 1_000
# [estimate] one viewer in ten keeps the communes' leaderboard on its board
LEADERBOARD_VIEWERS = VIEWERS // 10
CAMPAIGN_DAYS = 50
SUBJECT_SHARE = 0.30  # the benchmark's mix: 30 % of events carry a citizen

# CPU seconds per 1,000 events, per process kind, where the run keeps them
PER_EVENT = (
    ("ingest", ("ingest", "cpu_seconds_per_1000_events")),
    ("aggregator", ("aggregator_apply", "cpu_seconds_per_1000_events")),
    ("PostgreSQL (the apply)", ("aggregator_apply", "postgres_cpu_seconds_per_1000_events")),
    ("broker", ("aggregator_apply", "broker_cpu_seconds_per_1000_events")),
    ("notifier", ("notifier", "cpu_seconds_per_1000_events")),
)


def _p50_seconds(results: dict[str, Any], read: str) -> float | None:
    ms = dig(results, ("reads", "alone", read, "p50_ms"))
    return ms / 1000 if isinstance(ms, int | float) else None


def stored_rows(results: dict[str, Any]) -> dict[str, float]:
    """Rows of each growing table for one campaign at peak every day of its 50."""
    events = EVENTS_PER_DAY * CAMPAIGN_DAYS
    return {
        "events": events,
        "subjects": events * SUBJECT_SHARE,
        "subtree_days": UNITS * INDICATORS * CAMPAIGN_DAYS,
        "progress": UNITS * INDICATORS,
    }


def block(results: dict[str, Any] | None) -> str:
    if results is None:
        return NOT_MEASURED
    m = results["machine"]
    lines = [
        f"From one `make bench{' --quick' if m['quick'] else ''}` run"
        f" (`bench/results/{'quick' if m['quick'] else 'latest'}.json`, started"
        f" {m['started_at'][:16].replace('T', ' ')}"
        f" UTC on {m['cpus']} cores, load average {m['load_average_before'][0]:.2f} before"
        f" and {m['load_average_after'][0]:.2f} after).",
        "",
        "| figure | value | kind |",
        "|---|---|---|",
    ]
    per_event = 0.0
    for name, path in PER_EVENT:
        v = dig(results, path)
        if isinstance(v, int | float):
            per_event += v
            lines.append(f"| CPU per event, {name} | {v * 1000:.0f} µs | measured |")
    lines.append(
        f"| CPU at the burst ({BURST_EVENTS_PER_SECOND:,.0f} events/s), all of the above"
        f" | {BURST_EVENTS_PER_SECOND * per_event / 1000:.2f} cores | derived |"
    )
    lines.append(
        f"| CPU for a peak day ({EVENTS_PER_DAY:,} events) | "
        f"{EVENTS_PER_DAY * per_event / 1000:,.0f} CPU-seconds | derived |"
    )
    for key, label in (
        ("aggregator_apply", "apply, one aggregator"),
        ("aggregator_apply_scaled", "apply, the scale-out's replicas"),
        ("ingest", "ingest, one process"),
        ("ingest_scaled", "ingest, the scale-out's processes"),
    ):
        eps = dig(results, (key, "events_per_second"))
        if isinstance(eps, int | float):
            lines.append(
                f"| {label} | {eps:,} events/s = {eps / BURST_EVENTS_PER_SECOND:.0f} × the"
                " burst | measured; derived |"
            )
    # the core demands the first wall is the largest of
    demands = {"the writes at the burst": BURST_EVENTS_PER_SECOND * per_event / 1000}
    board = [_p50_seconds(results, read) for read in BOARD]
    if board and all(b is not None for b in board):
        per_refresh = sum(b for b in board if b is not None)
        lines.append(
            f"| one viewer's live board ({len(BOARD)} reads), alone p50 summed"
            f" | {per_refresh * 1000:.0f} ms | measured |"
        )
        demands[f"{VIEWERS:,} viewers' live boards"] = VIEWERS / REFRESH * per_refresh
        lines.append(
            f"| {VIEWERS:,} viewers refreshing every {REFRESH:.0f} s"
            f" | {VIEWERS / REFRESH * per_refresh:.1f} cores | derived |"
        )
    if (lb := _p50_seconds(results, "leaderboard_communes_live")) is not None:
        lines.append(
            f"| the communes' leaderboard, one read alone (p50) | {lb * 1000:,.0f} ms | measured |"
        )
        demands["the leaderboard read per viewer"] = LEADERBOARD_VIEWERS / REFRESH * lb
        lines.append(
            f"| {LEADERBOARD_VIEWERS} viewers with it on their board, each its own read"
            f" | {LEADERBOARD_VIEWERS / REFRESH * lb:.1f} cores | derived (share: estimate) |"
        )
    if (as_of := _p50_seconds(results, "as_of_country")) is not None:
        lines.append(f"| `as_of` of the country, alone (p50) | {as_of * 1000:,.0f} ms | measured |")
    wall = max(demands, key=lambda k: demands[k])
    lines.append(
        f"| the first wall: the largest of these core demands | {wall},"
        f" {demands[wall]:.1f} cores | derived |"
    )
    storage = dig(results, ("reads", "storage")) or {}
    total = 0.0
    for table, rows in stored_rows(results).items():
        per_row = dig(storage, (table, "bytes_per_row"))
        if isinstance(per_row, int | float):
            total += rows * per_row
            lines.append(
                f"| `{table}`: {per_row} B a row (measured) × {rows:,.0f} rows"
                f" | {rows * per_row / 1e9:.2f} GB | derived |"
            )
    if total:
        lines.append(
            f"| PostgreSQL for one 50-day campaign at peak, without WAL and backups"
            f" | {total / 1e9:.0f} GB | derived |"
        )
    return "\n".join(lines)
