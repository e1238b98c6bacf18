"""The benchmark's child processes: services with their CPU time and peak memory, the load
generator, and the CPU time of a server's whole process tree."""

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent


class Service:
    """A service in its own process, with its CPU time and peak memory."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("TIENDO_")}
        full_env.update(env)
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                args, env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )
        self.process = psutil.Process(self.popen.pid)
        self.peak_rss = 0
        self.log = log

    async def wait_ready(self, url: str, timeout: float = 60) -> None:
        """Until `url` answers 200; fails at once, with the log's end, if the process ends."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while self.popen.poll() is None:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.3)
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"not ready at {url} (exit code {self.popen.poll()}):\n{tail}")

    def sample(self) -> None:
        """Peak resident memory so far: the kernel's high-water mark (VmHWM), so a peak
        between two samples is not missed."""
        with contextlib.suppress(psutil.NoSuchProcess):
            # with workers, the largest of them (each holds a whole service)
            for process in [self.process, *self.process.children()]:
                status = Path(f"/proc/{process.pid}/status")
                peak = process.memory_info().rss
                if status.exists():
                    for line in status.read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            peak = int(line.split()[1]) * 1024
                self.peak_rss = max(self.peak_rss, peak)

    def cpu_seconds(self) -> float:
        """Its CPU time and its children's (a service run as several workers)."""
        t = self.process.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in self.process.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                c = child.cpu_times()
                total += c.user + c.system
        return float(total)

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a server and every process under it, the exited ones included (a
    PostgreSQL backend's time goes to the postmaster's children when it ends)."""
    root = psutil.Process(pid)
    t = root.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            c = child.cpu_times()
            total += c.user + c.system
    return float(total)


def loadgen(
    url: str,
    token: str,
    n: int,
    concurrency: int,
    rate: float | None = None,
    prefix: str = "lg",
    compress: bool = False,
) -> dict[str, Any]:
    """`bench.loadgen` in its own process, so its CPU is not the service's; its JSON report."""
    args = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        url,
        "--token",
        token,
        "--events",
        str(n),
        "--concurrency",
        str(concurrency),
        "--prefix",
        prefix,
    ]
    if rate:
        args += ["--rate", str(rate)]
    if compress:
        args.append("--gzip")
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result
