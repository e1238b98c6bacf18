"""Where the benchmark's figures go: bench/results/latest.json (quick.json for a quick run),
the table it prints, and the README's table generated from it.

    python -m bench.report --readme [--results bench/results/latest.json]

rewrites the README's block between README_BLOCK's two comments (and docs/capacity.md's,
`bench.capacity`) from the results file, so that neither is edited by hand."""

import argparse
import json
import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LATEST = RESULTS / "latest.json"
README = ROOT / "README.md"
# what is not a figure in the results
META = ("machine", "phases", "goals")


def artifact(name: str, quick: bool) -> Path:
    """bench/results/<name>; quick-<name> for a quick run, which never overwrites a full one."""
    return RESULTS / (f"quick-{name}" if quick else name)


# A fixed piece of pure Python, timed before and after a run: one core's speed, which on
# this VM drifts by half or more within a day on an idle box (4 December: a loop like this
# one, at a module's top level, took 0.70-0.81 s in the morning and 0.93-1.9 s in the
# afternoon and evening). It is one of a run's conditions, beside the ceilings: these
# measure the broker, the network and the disk, which need not drift with it (that
# evening the loop here took 0.42 s before and after a run whose Kafka ceilings were half
# the morning's).
CORE_SPEED_LOOP = 10_000_000


def core_speed_seconds(rounds: int = 3) -> float:
    """The best of `rounds` timings of `CORE_SPEED_LOOP` additions in a Python loop."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for i in range(CORE_SPEED_LOOP):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def snapshot() -> dict[str, Any]:
    """The box's conditions at the start of a run."""
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "core_speed_seconds": core_speed_seconds(),
        # at the start: the run rewrites tracked files (its flame graphs), which would make
        # every run's commit read "-dirty" at its end
        "commit": git_commit(),
    }


def git_commit() -> str | None:
    out = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--abbrev=12"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    return out.stdout.strip() or None


def machine(
    before: dict[str, Any], quick: bool, seconds: float, versions: dict[str, str] | None = None
) -> dict[str, Any]:
    """The box the figures were measured on and its load before and after, kept beside them."""
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30),
        "load_average_before": before["load_average"],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        # (`CORE_SPEED_LOOP`; lower is faster)
        "core_speed_seconds_before": before.get("core_speed_seconds"),
        "core_speed_seconds_after": core_speed_seconds(),
        "versions": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "commit": before.get("commit") or git_commit(),
            **(versions or {}),
        },
        "quick": quick,
        "total_seconds": round(seconds),
        "started_at": before["started_at"],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write(results: dict[str, Any], quick: bool) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / ("quick.json" if quick else "latest.json")
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path


def table(results: dict[str, Any]) -> str:
    """Every figure of the run, one line each, for the terminal."""
    rows = [("figure", "value", "ceiling ratio")]
    for key, r in results.items():
        if not isinstance(r, dict) or key in META:
            continue
        value = r.get("events_per_second")
        text = f"{value:,} events/s" if isinstance(value, int) else ""
        if key.startswith("ingest_sustained"):
            text = (
                f"{r['achieved_events_per_second']:,} of {r['offered_events_per_second']:,}"
                f" events/s offered, batch p50 {r['batch_p50_ms']} ms p99 {r['batch_p99_ms']} ms"
            )
        if key.startswith("ingest") and (r.get("workers") or 1) > 1:
            text += f", {r['workers']} workers"
        if key.startswith("aggregator_apply") and (r.get("replicas") or 1) > 1:
            text += f", {r['replicas']} replicas"
        if key.startswith("ingest") and r.get("gzip"):
            text += ", gzip bodies"
        if key == "freshness":
            text = f"p50 {r['p50_seconds']} s, p99 {r['p99_seconds']} s"
        if key == "reads":
            alone, loaded = r["alone"], r["under_load"]["viewers"]
            text = (
                f"{r['dataset']['events']:,} events: live country p99 "
                f"{alone['live_country']['p99_ms']} ms alone, "
                f"{loaded.get('live_country', {}).get('p99_ms')} ms under load; "
                f"leaderboard p99 {alone['leaderboard_communes_live']['p99_ms']} ms; "
                f"as_of country p99 {alone['as_of_country']['p99_ms']} ms; "
                f"freshness p99 {r['freshness']['p99_seconds']} s"
            )
        if key == "alert_evaluation":
            text = f"{r['pairs']:,} pairs in {r['seconds']} s"
            if p := r.get("pass"):
                text += (
                    f"; a full pass's pure work {p['first_seconds']} s first,"
                    f" {p['steady_seconds']} s steady ({p['open_alerts']:,} alerts open)"
                )
        if key in ("ingest", "ingest_scaled"):
            text += f", batch p50 {r['batch_p50_ms']} ms p99 {r['batch_p99_ms']} ms"
        if "cpu_seconds_per_1000_events" in r:
            text += (
                f", {r['cpu_seconds_per_1000_events']} CPU s/1000 ev, peak {r['peak_rss_mb']} MB"
            )
        if "postgres_cpu_seconds_per_1000_events" in r:
            text += f" (PostgreSQL {r['postgres_cpu_seconds_per_1000_events']} CPU s/1000 ev)"
        ratio = str(r.get("ratio_to_bare_produce") or r.get("ratio_to_bare_consume") or "")
        if "ratio_to_bare_produce_batched" in r:
            ratio += f" ({r['ratio_to_bare_produce_batched']} of batched)"
        rows.append((key, text, ratio))
    for g in results.get("goals", []):
        verdict = "met" if g["met"] else "NOT met"
        rows.append((f"goal {g['goal']}", f"{g['figure']:,} {g['unit']}", verdict))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)) for r in rows)


# --- the README's block ------------------------------------------------------------------

README_BLOCK = ("<!-- bench-table:begin -->", "<!-- bench-table:end -->")
NOT_MEASURED = (
    "No full run is committed yet (`bench/results/latest.json`): run `make bench`, then"
    " `python -m bench.report --readme`, and commit both."
)


def counted(n: int, noun: str) -> str:
    plural = f"{noun}es" if noun.endswith("s") else f"{noun}s"
    return f"{n} {noun if n == 1 else plural}"


def number(value: float, unit: str) -> str:
    if unit == "events/s":
        return f"{value:,.0f} events/s"
    return f"{value:,} {unit}"


def _loads(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def conditions_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    v = m["versions"]
    kafka = f", Kafka {v['kafka']}" if v.get("kafka") else ""
    pg = f", PostgreSQL {v['postgresql']}" if v.get("postgresql") else ""
    return (
        f"One `make bench` run{' (--quick)' if m['quick'] else ''}, started"
        f" {m['started_at'].replace('T', ' ')[:16]} UTC, {round(m['total_seconds'] / 60)}"
        f" minutes in all, on {m['cpus']} cores and {m['memory_gb']} GiB (load average"
        f" 1/5/15 min {_loads(m['load_average_before'])} before,"
        f" {_loads(m['load_average_after'])} after{_core_speed(m)}); Python"
        f" {v['python']}{pg}{kafka}, commit `{v.get('commit')}`."
    )


def _core_speed(m: dict[str, Any]) -> str:
    """The run's core speed, where it was measured (runs before 4 December evening lack it)."""
    before, after = m.get("core_speed_seconds_before"), m.get("core_speed_seconds_after")
    if before is None or after is None:
        return ""
    return (
        f"; a fixed Python loop of {CORE_SPEED_LOOP:,} additions took {before:.2f} s before"
        f" and {after:.2f} s after, best of 3 (lower is faster)"
    )


def goal_rows(results: dict[str, Any]) -> list[str]:
    rows = []
    for g in results.get("goals", []):
        bound = ("< " if g["unit"] != "events/s" else "≥ ") + number(g["bound"], g["unit"])
        if g["ratio_at_least"] is not None:
            bound += f", ≥ {g['ratio_at_least']} × ceiling"
        ceiling = (
            f"{number(g['ceiling'], g['unit'])} ({g['ceiling_of']})"
            if g["ceiling"] is not None
            else "none in the run"
        )
        ratio = f"{g['ratio']} ×" if g["ratio"] is not None else ""
        rows.append(
            f"| {g['text']} | {number(g['figure'], g['unit'])} | {ceiling} | {ratio} | {bound}"
            f" | {'yes' if g['met'] else '**no**'} |"
        )
    return rows


def other_rows(results: dict[str, Any]) -> list[str]:
    """The run's figures that are no goal of the issue but explain the goals."""
    rows = []
    ceilings = [
        f"{label} {results[key]['events_per_second']:,} events/s"
        for key, label in (
            ("ceiling_producer_performance", "Kafka's ProducerPerformance"),
            ("ceiling_bare_produce", "plain aiokafka `send` loop"),
            ("ceiling_bare_produce_batched", "batched produce loop"),
            ("ceiling_bare_consume", "bare `getmany` loop"),
            ("ceiling_ingest_without_kafka", "ingest without Kafka"),
        )
        if key in results
    ]
    if ceilings:
        rows.append(f"| the run's ceilings | {'; '.join(ceilings)} | |")
    # the one-process figures, then the scale-out's
    for suffix in ("", "_scaled"):
        if r := results.get(f"ingest{suffix}"):
            rows.append(
                f"| ingest at saturation, {counted(r['workers'], 'process')},"
                f" {r['concurrency']} connections | {r['events_per_second']:,} events/s;"
                f" batch p99 {r['batch_p99_ms']} ms | {r['ratio_to_bare_produce']} × plain"
                f" `send` loop, {r['ratio_to_bare_produce_batched']} × batched produce loop |"
            )
        if r := results.get(f"ingest_sustained{suffix}"):
            rows.append(
                f"| ingest at {r['offered_events_per_second']:,} events/s offered,"
                f" {counted(r['workers'], 'process')}, {r['concurrency']} connections"
                f" | {r['achieved_events_per_second']:,} events/s achieved; batch p50"
                f" {r['batch_p50_ms']} ms, p99 {r['batch_p99_ms']} ms | |"
            )
        if r := results.get(f"aggregator_apply{suffix}"):
            rows.append(
                f"| apply, {counted(r['replicas'], 'replica')}, {r['events']:,} events"
                f" | {r['events_per_second']:,} events/s; CPU per 1,000 events: aggregator"
                f" {r['cpu_seconds_per_1000_events']} s, PostgreSQL"
                f" {r['postgres_cpu_seconds_per_1000_events']} s, broker"
                f" {r['broker_cpu_seconds_per_1000_events']} s"
                f" | {r['ratio_to_bare_consume']} × bare consume |"
            )
    if r := results.get("rebuild"):
        rows.append(
            f"| rebuild from the topic | {r['events']:,} events in {r['seconds']} s"
            f" ({r['events_per_second']:,}/s) | |"
        )
    if r := results.get("alert_evaluation"):
        rows.append(
            f"| alert evaluation (rule conditions) | {r['pairs']:,} pairs in {r['seconds']} s | |"
        )
        if p := r.get("pass"):
            rows.append(
                f"| a full pass's pure work on them (figures, rules, each alert's step) |"
                f" {p['first_seconds']} s opening {p['open_alerts']:,} alerts,"
                f" {p['steady_seconds']} s steady | |"
            )
    if r := results.get("reads"):
        d = r["dataset"]
        rows.append(
            f"| the reads' dataset | {d['events']:,} events, {d['units']:,} units,"
            f" {d['indicators']} indicators, loaded in {d['load_seconds']} s | |"
        )
    return rows


def flame_links(results: dict[str, Any]) -> list[str]:
    """Links to the run's flame graphs, relative to the repository's root."""
    links = []
    apply = results.get("aggregator_apply", {}).get("flame_graph")
    if apply:
        links.append(f"[the apply]({apply})")
    slowest = results.get("reads", {}).get("slowest", {})
    if slowest.get("flame_graph"):
        links.append(f"[the slowest read, `{slowest['read']}`]({slowest['flame_graph']})")
    for key in ("ingest", "notifier"):
        if path := results.get(key, {}).get("flame_graph"):
            links.append(f"[{key}]({path})")
    return links


def readme_block(results: dict[str, Any] | None) -> str:
    """The README's benchmark table, from one run's results (None: no run committed)."""
    if results is None:
        return NOT_MEASURED
    lines = [
        conditions_line(results),
        "",
        "| issue 15 goal | measured | ceiling in the same run | ratio | goal | met |",
        "|---|---|---|---|---|---|",
        *goal_rows(results),
        "",
        "| other figures of the run | measured | against its ceiling |",
        "|---|---|---|",
        *other_rows(results),
    ]
    if links := flame_links(results):
        lines += ["", "Flame graphs (py-spy) of this run: " + ", ".join(links) + "."]
    if slowest := results.get("reads", {}).get("slowest"):
        lines += [
            "",
            f"The slowest read alone is `{slowest['read']}`; the `EXPLAIN (ANALYZE, BUFFERS)`"
            f" of its slowest statement ({slowest['statement_ms']} ms) is under"
            " `reads.slowest.plan` in `bench/results/latest.json`.",
        ]
    if phases := results.get("phases"):
        took = ", ".join(f"{name} {round(p['seconds'])} s" for name, p in phases.items())
        lines += ["", f"Phases: {took}."]
    return "\n".join(lines)


def replace_block(text: str, markers: tuple[str, str], block: str) -> str:
    """`text` with what lies between the two marker comments replaced by `block`."""
    begin, end = markers
    head, found, rest = text.partition(begin)
    if not found or end not in rest:
        raise ValueError(f"{begin} … {end} not found")
    return f"{head}{begin}\n{block}\n{end}{rest.partition(end)[2]}"


def block_of(text: str, markers: tuple[str, str]) -> str:
    """What lies between the two marker comments, as `replace_block` wrote it."""
    begin, end = markers
    return text.partition(begin)[2].partition(end)[0].strip("\n")


def load(path: Path = LATEST) -> dict[str, Any] | None:
    if not path.exists():
        return None
    results: dict[str, Any] = json.loads(path.read_text())
    return results


def main() -> None:
    from bench import capacity

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("--results", type=Path, default=LATEST)
    parser.add_argument(
        "--readme",
        action="store_true",
        help="rewrite README.md's benchmark table and docs/capacity.md's measured figures",
    )
    args = parser.parse_args()
    results = load(args.results)
    if not args.readme:
        print(table(results) if results else NOT_MEASURED)
        return
    README.write_text(replace_block(README.read_text(), README_BLOCK, readme_block(results)))
    doc = capacity.DOC
    doc.write_text(replace_block(doc.read_text(), capacity.BLOCK, capacity.block(results)))
    print(f"rewrote {README.relative_to(ROOT)} and {doc.relative_to(ROOT)} from {args.results}")


if __name__ == "__main__":
    main()
