"""`--profile`: py-spy flame graphs of a running service and the heaviest SQL statements."""

import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

from bench.processes import ROOT
from bench.report import RESULTS


class FlameGraph:
    """py-spy sampling a running service into bench/results/<name>.svg (with --profile)."""

    def __init__(self, name: str, pid: int, enabled: bool) -> None:
        self.path = RESULTS / f"flame-{name}.svg"
        self.popen: subprocess.Popen[bytes] | None = None
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if enabled and spy:
            RESULTS.mkdir(exist_ok=True)
            self.popen = subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--rate", "200", "--output", str(self.path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def stop(self) -> str | None:
        if self.popen is None:
            return None
        # py-spy writes the graph when interrupted
        self.popen.send_signal(signal.SIGINT)
        self.popen.wait(60)
        return str(self.path.relative_to(ROOT))


SQL_PROFILE = """
SELECT calls, round(total_exec_time)::bigint AS total_ms,
       round((total_exec_time / greatest(calls, 1))::numeric, 2)::float AS mean_ms, rows,
       regexp_replace(left(query, 160), '\\s+', ' ', 'g') AS query
FROM pg_stat_statements
WHERE query NOT ILIKE '%pg_stat_statements%'
ORDER BY total_exec_time DESC
LIMIT 15
"""


async def sql_profile(conn: asyncpg.Connection, name: str) -> list[dict[str, Any]]:
    """The statements that took the most server time since the last reset (--profile)."""
    rows = [dict(r) for r in await conn.fetch(SQL_PROFILE)]
    RESULTS.mkdir(exist_ok=True)
    lines = [
        f"{r['total_ms']:>8} ms {r['calls']:>6} calls {r['rows']:>9} rows  {r['query']}"
        for r in rows
    ]
    (RESULTS / f"sql-{name}.txt").write_text("\n".join(lines) + "\n")
    return rows
