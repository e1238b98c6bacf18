"""A PostgreSQL server from the distribution's binaries, in its own folder and port."""

import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tiendo.localstack.net import wait_for_port

SUPERUSER = "tiendo"


def postgres_bindir() -> Path:
    """The newest server installation: pg_config's bindir, or Debian's layout."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run(
            [pg_config, "--bindir"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if out and (Path(out) / "postgres").exists():
            return Path(out)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")


@dataclass
class PostgresServer:
    """PostgreSQL refuses to run as root; as root the server runs as the `postgres` user."""

    data_dir: Path
    port: int = 5433
    fast: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return cmd
        # setpriv execs (no intermediate process), so signals reach the server directly.
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *cmd]

    def init(self) -> None:
        """initdb once (skipped when the cluster exists)."""
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.data_dir, owner.pw_uid, owner.pw_gid)
            # The server runs as `postgres` and must reach its folder: private temp folders
            # (0700, e.g. pytest's) get the traverse bit only, never read.
            for parent in self.data_dir.resolve().parents:
                mode = parent.stat().st_mode
                if not mode & stat.S_IXOTH:
                    parent.chmod(mode | stat.S_IXOTH)
        subprocess.run(
            self._as_owner(
                [
                    str(postgres_bindir() / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    SUPERUSER,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-instructions",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def command(self) -> list[str]:
        """The server command line, in the foreground, listening on 127.0.0.1 only."""
        options = [
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"port={self.port}",
            "-c",
            f"unix_socket_directories={self.data_dir}",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=256MB",
            "-c",
            "log_min_messages=warning",
        ]
        if self.fast:
            # Throwaway test clusters. A killed server still recovers every commit (the OS
            # keeps its writes); only a power cut could lose one, which no test simulates.
            options += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        return self._as_owner(
            [str(postgres_bindir() / "postgres"), "-D", str(self.pgdata), *options]
        )

    def start(self, timeout: float = 60.0) -> None:
        self.init()
        with (self.data_dir / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_for_port(self.port, timeout)
        except TimeoutError:
            self.kill()
            raise

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): roll back open transactions, checkpoint, exit."""
        if self.process is None:
            return
        self._signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the postmaster, as in a crash (recovery runs on the next start)."""
        if self.process is None:
            return
        self._signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def _signal(self, sig: signal.Signals) -> None:
        # Signal the session group: backends die with the postmaster, as in a real crash.
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def exec(self) -> None:
        """Replace this process with the server (for a process runner)."""
        self.init()
        cmd = self.command()
        os.execvp(cmd[0], cmd)  # noqa: S606 - fixed arguments
