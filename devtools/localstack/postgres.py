"""A PostgreSQL server from the distribution's binaries, in its own folder and on its own port."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from devtools.localstack.server import ServerProcess

SUPERUSER = "tiendo"
# PostgreSQL refuses to run as root; as root the server runs as this OS user instead.
OS_USER = "postgres"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# sun_path holds 107 bytes; the socket file name adds 17 (".s.PGSQL.65535.lock" minus slack).
_MAX_SOCKET_DIR = 90


def postgres_bindir() -> Path:
    """The newest server installation: Debian's /usr/lib/postgresql/N/bin, pg_config, PATH."""
    installed = [
        p.parent
        for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")
        if p.parent.parent.name.isdigit()
    ]
    if installed:
        return max(installed, key=lambda bindir: int(bindir.parent.name))
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if out and (Path(out) / "postgres").exists():
            return Path(out)
    found = shutil.which("postgres")
    if found is not None:
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")


def _as_root() -> bool:
    return os.geteuid() == 0


def _let_os_user_reach(path: Path, uid: int, gid: int) -> None:
    """Own `path` by the server's user and let it traverse every parent folder.

    Private temporary folders (0700, such as pytest's /tmp/pytest-of-root) get the traverse
    bit for others only: the server must reach its data dir, never list what is beside it.
    """
    os.chown(path, uid, gid)
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


@dataclass
class PostgresServer(ServerProcess):
    """A cluster in `data_dir`/pgdata serving 127.0.0.1:`port`, superuser `tiendo`, trust auth.

    `fast` trades durability against power cuts for speed (fsync and full_page_writes off):
    a killed server still keeps every commit it acknowledged, so crash tests stay valid.
    """

    name: ClassVar[str] = "PostgreSQL"

    data_dir: Path
    port: int = 5433
    fast: bool = False
    bindir: Path | None = None
    # more server settings (`-c key=value`), e.g. the benchmark's pg_stat_statements
    settings: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def socket_dir(self) -> str:
        """The Unix socket's folder (the data dir), or "" (TCP only) when its path is too long."""
        path = str(self.data_dir.resolve())
        return path if len(path) <= _MAX_SOCKET_DIR else ""

    def dsn(self, database: str = "postgres") -> str:
        """A libpq/asyncpg URL for `database` on this server."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _bin(self, name: str) -> str:
        return str((self.bindir or postgres_bindir()) / name)

    def _as_owner(self, cmd: list[str]) -> list[str]:
        if not _as_root():
            return cmd
        # setpriv execs in place (runuser would stay as a parent), so the server keeps the
        # pid we started and a process runner's signals reach the postmaster itself.
        return ["setpriv", f"--reuid={OS_USER}", f"--regid={OS_USER}", "--init-groups", *cmd]

    def init(self) -> bool:
        """Run initdb once; False when the cluster already exists (PG_VERSION is there)."""
        if (self.pgdata / "PG_VERSION").exists():
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _as_root():
            owner = pwd.getpwnam(OS_USER)
            _let_os_user_reach(self.data_dir.resolve(), owner.pw_uid, owner.pw_gid)
        initdb = [
            self._bin("initdb"),
            "--pgdata",
            str(self.pgdata),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C.UTF-8",
            # PostgreSQL compares text byte-wise only under the collation named C: under
            # C.UTF-8 every key comparison and sort of the apply (event ids, units,
            # indicators) went through strcoll (the apply's PostgreSQL CPU per event 5 %
            # lower under C). The order is the same: UTF-8's bytes sort as its code points.
            "--lc-collate",
            "C",
            "--no-instructions",
        ]
        if self.fast:
            initdb.append("--no-sync")
        result = subprocess.run(self._as_owner(initdb), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}{result.stderr}")
        return True

    def command(self) -> list[str]:
        """The postmaster command line (foreground), listening on 127.0.0.1 only."""
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": self.socket_dir,
            # pools of three services and of parallel test workers
            "max_connections": "200",
            "shared_buffers": "512MB",
            # The event history is written all day: checkpoints by time, not every 1 GB of
            # WAL (each one doubles the WAL with full-page images for a while).
            "max_wal_size": "4GB",
            "checkpoint_timeout": "15min",
            "log_min_messages": "warning",
            "log_timezone": "UTC",
        }
        if self.fast:
            # A killed server still recovers every acknowledged commit (the OS keeps what
            # was written); only a power cut could lose one, and no test simulates that.
            settings |= {"fsync": "off", "full_page_writes": "off"}
        settings |= self.settings
        options = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        return self._as_owner([self._bin("postgres"), "-D", str(self.pgdata), *options])

    def start(self, timeout: float = 60.0) -> subprocess.Popen[bytes]:
        """initdb if needed, start in the background (log: data_dir/postgres.log), wait."""
        if self.running:
            raise RuntimeError(f"PostgreSQL on port {self.port} is already running")
        self.init()
        return self._launch(self.command(), self._accepting, timeout)

    def _accepting(self) -> bool:
        isready = [
            self._bin("pg_isready"),
            "--host=127.0.0.1",
            f"--port={self.port}",
            f"--username={SUPERUSER}",
            "--dbname=postgres",
            "--timeout=2",
            "--quiet",
        ]
        return subprocess.run(isready, check=False).returncode == 0

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the server accepts connections (crash recovery included)."""
        self._wait(self._accepting, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): roll back open transactions, checkpoint, exit."""
        self._stop(signal.SIGINT, timeout)

    def stop_immediately(self, timeout: float = 30.0) -> None:
        """Immediate shutdown (SIGQUIT, `pg_ctl -m immediate`): no checkpoint, connections
        cut at once; the next start runs crash recovery from the WAL."""
        self._stop(signal.SIGQUIT, timeout)

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """CREATE DATABASE `name` unless it exists (the server must be running); its DSN."""
        for identifier in (name, template):
            if identifier is not None and not _IDENTIFIER.fullmatch(identifier):
                raise ValueError(f"not a plain SQL identifier: {identifier!r}")
        # psql's :'var' interpolation quotes the value; \gexec runs the generated statement.
        script = (
            "SELECT format('CREATE DATABASE %I TEMPLATE %I', :'name', :'template')\n"
            "WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'name') \\gexec\n"
        )
        result = subprocess.run(
            [
                self._bin("psql"),
                "--no-psqlrc",
                "--quiet",
                "--host=127.0.0.1",
                f"--port={self.port}",
                f"--username={SUPERUSER}",
                "--dbname=postgres",
                "--set=ON_ERROR_STOP=1",
                f"--set=name={name}",
                f"--set=template={template or 'template1'}",
            ],
            input=script,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"CREATE DATABASE {name} failed:\n{result.stderr}")
        return self.dsn(name)

    def exec(self) -> None:
        """Replace this process with the server (initdb first if needed), for a process runner."""
        self.init()
        cmd = self.command()
        os.execvp(cmd[0], cmd)  # noqa: S606 - fixed arguments
