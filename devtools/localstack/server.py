"""What the local Kafka broker and PostgreSQL server have in common: a child process in
its own session, started in the background, waited for, stopped or killed."""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from devtools.localstack.net import log_tail


class ServerProcess:
    """Mixin for a dataclass with `process: subprocess.Popen[bytes] | None`."""

    process: subprocess.Popen[bytes] | None
    name: ClassVar[str] = "server"

    @property
    def log_file(self) -> Path:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _launch(
        self, command: list[str], ready: Callable[[], bool], timeout: float
    ) -> subprocess.Popen[bytes]:
        """Start `command` (output appended to the log file) and wait until `ready()`."""
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait(ready, timeout)
        except BaseException:
            self.kill()
            raise
        return self.process

    def _wait(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{log_tail(self.log_file)}"
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name} not ready after {timeout} s:\n{log_tail(self.log_file)}"
                )
            time.sleep(0.1)

    def _stop(self, sig: signal.Signals, timeout: float) -> None:
        """Send `sig` and wait; SIGKILL when it takes longer than `timeout`."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the whole session, as in a crash; the next start recovers from disk.

        The session, not only the main process: a PostgreSQL backend outliving its
        postmaster keeps the shared memory attached and the next start would be refused.
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None
