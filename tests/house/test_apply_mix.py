"""`python -m bench.apply_mix` (the apply's SQL measured apart from Kafka) still runs on the
code as it is: a renamed statement, a changed `counting.apply_events` or a log line on
stdout would otherwise surface only when someone needs the figures."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_it_prints_each_orders_rate_and_the_statements_by_their_constants_names() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.apply_mix",
            "--events",
            "3000",
            "--batch",
            "1000",
            "--rounds",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)  # stdout is the JSON alone
    for order in ("random", "time"):
        taken = figures[order]
        assert len(taken["rounds_events_per_second"]) == 2
        assert taken["events_per_second"] > 0
        # the day rollups and the insert are named, not quoted
        assert {"APPLY_DAY_CHANGES", "INSERT_NEW_EVENTS_DISTINCT"} <= set(taken["statement_ms"])
