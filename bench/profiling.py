"""py-spy flame graphs of a running process (the apply and the slowest read in every run;
ingest and the notifier with `--profile`) and, with `--profile`, the heaviest SQL
statements."""

import asyncio
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

from bench.processes import ROOT


class FlameGraph:
    """py-spy sampling a running process into `path` (an SVG) until `stop`. It reads the
    process's memory without pausing it (--nonblocking): the measured figure pays py-spy's
    own CPU, a few % of a core at 100 samples a second, not a stop per sample."""

    def __init__(
        self, path: Path, pid: int, enabled: bool, idle: bool = False, workers: bool = False
    ) -> None:
        """`idle`: sample the waits too (a read waiting on PostgreSQL is idle in Python: its
        graph then shows the share of its time spent waiting against judging; the idle
        threads of the default executor show too). `workers`: sample the process's
        children (a service run as several workers, whose parent only supervises)."""
        self.path = path
        self.popen: subprocess.Popen[bytes] | None = None
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if enabled and spy:
            path.parent.mkdir(exist_ok=True)
            self.popen = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "100",
                    "--nonblocking",
                    "--output",
                    str(path),
                    *(["--idle"] if idle else []),
                    *(["--subprocesses"] if workers else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def stop(self) -> str | None:
        if self.popen is None:
            return None
        # py-spy writes the graph when interrupted
        self.popen.send_signal(signal.SIGINT)
        self.popen.wait(60)
        if not self.path.exists():
            return None
        # relative to the repository, as the README links it
        return str(self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path)


SQL_PROFILE = """
SELECT calls, round(total_exec_time)::bigint AS total_ms,
       round((total_exec_time / greatest(calls, 1))::numeric, 2)::float AS mean_ms, rows,
       regexp_replace(left(query, 160), '\\s+', ' ', 'g') AS query
FROM pg_stat_statements
WHERE query NOT ILIKE '%pg_stat_statements%'
ORDER BY total_exec_time DESC
LIMIT 15
"""


async def sql_profile(conn: asyncpg.Connection, path: Path) -> list[dict[str, Any]]:
    """The statements that took the most server time since the last reset (--profile),
    also written to `path`."""
    rows = [dict(r) for r in await conn.fetch(SQL_PROFILE)]
    path.parent.mkdir(exist_ok=True)
    lines = [
        f"{r['total_ms']:>8} ms {r['calls']:>6} calls {r['rows']:>9} rows  {r['query']}"
        for r in rows
    ]
    await asyncio.to_thread(path.write_text, "\n".join(lines) + "\n")
    return rows
