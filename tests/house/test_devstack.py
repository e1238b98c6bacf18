"""`make dev` starts quietly and truthfully: the whole dev stack (Kafka, PostgreSQL, the
three services, the webhook receiver, the demo) run as `make dev` runs it, in a folder of
this test's own and on free ports, prints no warning, error or traceback in its first
minute, and every service becomes ready. What counts as a bad line: docs/startup.md."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

WINDOW_SECONDS = 60.0
SERVICES = ("ingest", "aggregator", "notifier")
# What a healthy start must not print, in each part's own format (docs/startup.md).
BAD_LINES = {
    "a tiendo or library line at warning or above": re.compile(
        r"\[(warning|error|critical|exception)\s*\]"
    ),
    "a Kafka broker WARN, ERROR or FATAL line": re.compile(r"^\[[^\]]+\] (WARN|ERROR|FATAL) "),
    "a PostgreSQL WARNING, ERROR, FATAL or PANIC line": re.compile(
        r"\b(WARNING|ERROR|FATAL|PANIC):  "
    ),
    "a Python traceback": re.compile(r"Traceback \(most recent call last\)"),
    "a Python warning": re.compile(r"\b\w*Warning: "),
    "a Java exception": re.compile(r"Exception in thread|^\s+at [\w.$]+\("),
}
# The broker's own race, not ours: two consumer groups asking for their coordinator at the
# same moment both ask it to create `__consumer_offsets`; the second is told the topic
# exists and the broker says so at WARN. Both groups then proceed normally. Only this exact
# line is tolerated; any other broker WARN still fails the start.
BENIGN = re.compile(
    r"WARN Auto topic creation failed for __consumer_offsets with error 'TOPIC_ALREADY_EXISTS'"
)
# honcho's prefix: "07:10:00 ingest.1     | "
_PREFIX = re.compile(r"^\d\d:\d\d:\d\d (?P<process>\S+)\s*\| ?")


def _env_file(path: Path, timeout: float) -> dict[str, str]:
    """The settings devstack wrote for this stack (its ports), once it has written them."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"devstack wrote no {path} in {timeout} s"
        time.sleep(0.2)
    time.sleep(0.2)  # written in one call; let it land
    pairs = (
        line.partition("=") for line in path.read_text().splitlines() if not line.startswith("#")
    )
    return {key: value for key, sep, value in pairs if sep}


async def _logged_in(owner_dsn: str) -> set[str]:
    """The roles with a session on the stack's database."""
    conn = await asyncpg.connect(owner_dsn)
    try:
        rows = await conn.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database()"
        )
        return {r["usename"] for r in rows}
    finally:
        await conn.close()


def _ready(client: httpx.Client, port: str) -> bool:
    try:
        return client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def _stop(process: "subprocess.Popen[bytes]") -> None:
    """Ctrl-C (honcho stops every process it runs), then SIGKILL of the session."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_make_dev_starts_without_a_warning_and_every_service_becomes_ready(
    tmp_path: Path, repo_root: Path
) -> None:
    local = tmp_path / "local"
    output = tmp_path / "make-dev.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIENDO_")}
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "devtools.devstack", "--local", str(local), "--free-ports"],
            cwd=repo_root,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ready_after: dict[str, float] = {}
    try:
        settings = _env_file(local / "dev.env", timeout=120)
        started = time.monotonic()
        with httpx.Client(timeout=2.0) as client:
            while (elapsed := time.monotonic() - started) < WINDOW_SECONDS:
                assert process.poll() is None, output.read_text()[-5000:]
                for service in SERVICES:
                    port = settings[f"TIENDO_{service.upper()}_PORT"]
                    if service not in ready_after and _ready(client, port):
                        ready_after[service] = round(elapsed, 1)
                time.sleep(1.0)
        # the first minute only: what Ctrl-C makes the processes print comes after
        first_minute = output.read_bytes().decode(errors="replace").splitlines()
        logged_in = asyncio.run(_logged_in(settings["TIENDO_MIGRATE_DATABASE_URL"]))
    finally:
        _stop(process)

    assert first_minute, "make dev printed nothing"
    bad = [
        f"{what}: {line}"
        for line in first_minute
        for what, pattern in BAD_LINES.items()
        if pattern.search(_PREFIX.sub("", line)) and not BENIGN.search(line)
    ]
    # honcho says "system | ingest.1 stopped (rc=1)" when a process ends
    ended = [line for line in first_minute if " system " in line and " stopped " in line]
    assert bad + ended == [], "\n".join(bad + ended)
    assert set(ready_after) == set(SERVICES), f"ready: {ready_after}"
    # each service runs as its own role, which may not migrate: make dev migrated first
    assert {f"tiendo_{service}" for service in SERVICES} <= logged_in, logged_in
    # each service says once that it waits for a dependency, however long it waits
    for service in SERVICES:
        waits = [
            match.group(0)
            for line in first_minute
            if f" {service}.1 " in line and (match := re.search(r"waiting_for_\w+", line))
        ]
        assert len(waits) == len(set(waits)), waits
