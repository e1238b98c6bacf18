"""Where the benchmark's figures go: bench/results/latest.json, and the table it prints."""

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

RESULTS = Path(__file__).resolve().parent / "results"


def machine(quick: bool, seconds: float) -> dict[str, Any]:
    """The box the figures were measured on, kept beside them."""
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30),
        "load_average_before": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "quick": quick,
        "total_seconds": round(seconds),
        "measured_at": datetime.now(UTC).isoformat(),
    }


def write(results: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "latest.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    return path


def table(results: dict[str, Any]) -> str:
    rows = [("figure", "value", "ceiling ratio")]
    for key, r in results.items():
        if not isinstance(r, dict) or key == "machine":
            continue
        value = r.get("events_per_second")
        text = f"{value:,} events/s" if isinstance(value, int) else ""
        if key == "ingest_sustained":
            text = (
                f"{r['achieved_events_per_second']:,} of {r['offered_events_per_second']:,}"
                f" events/s offered, batch p50 {r['batch_p50_ms']} ms p99 {r['batch_p99_ms']} ms"
            )
        if key in ("ingest", "ingest_sustained") and (r.get("workers") or 1) > 1:
            text += f", {r['workers']} workers"
        if key in ("ingest", "ingest_sustained") and r.get("gzip"):
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
        if key == "ingest":
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
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)) for r in rows)
