"""Running a service's ASGI app under uvicorn with tiendo's logging: in this process
(`serve`), or in several processes sharing the port (`serve_workers`)."""

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable

import structlog
import uvicorn
from fastapi import FastAPI
from prometheus_client.multiprocess import mark_process_dead

from tiendo import eventloop
from tiendo.database import MigrationsPending
from tiendo.logs import configure_logging, get_logger
from tiendo.metrics import MULTIPROC_DIR_ENV
from tiendo.settings import ServiceSettings
from tiendo.startup import DependencyUnavailable

log = get_logger(__name__)

# How long a stopping worker may take once told to stop: uvicorn's drain (20 s) plus the
# lifespan's flush and close, before it is killed.
_WORKER_STOP_SECONDS = 40.0


async def _run(
    app: FastAPI,
    config: uvicorn.Config,
    bind: Callable[[], list[socket.socket]] | None = None,
) -> None:
    # The lifespan runs here rather than inside uvicorn, which would log a dependency that
    # never came as a traceback: the operator gets one line saying what did not answer.
    try:
        async with app.router.lifespan_context(app):
            server = uvicorn.Server(config)
            # uvicorn raises the signal that stopped it again once it has drained requests;
            # it must not kill the process before the lifespan has flushed and closed.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
            # Bound only now, once started: a worker still waiting for its dependencies
            # must not have the kernel queue connections on its socket.
            await server.serve(sockets=bind() if bind else None)
            # Stopping: the broker may be going down at the same moment (make dev stops
            # every process at once), and aiokafka logs each refused reconnect of a client
            # being closed at ERROR. tiendo's own lines still say what the stop did.
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    # A role-connected service finding migrations it may not apply: waiting would not help,
    # and the line says who must act.
    except (DependencyUnavailable, MigrationsPending) as exc:
        log.error("startup_failed", error=str(exc))
        sys.exit(1)


def _prepare(settings: ServiceSettings) -> None:
    configure_logging(settings.log_level, json=settings.environment == "production")
    if problems := settings.unsafe():
        # one line, before anything connects: a weak secret is the operator's to fix
        log.error("unsafe_settings", problems=problems)
        sys.exit(1)


def _config(app: FastAPI, settings: ServiceSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=20,
    )


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run until SIGINT/SIGTERM; uvicorn then drains requests, and the lifespan exits."""
    _prepare(settings)
    # Ctrl-C while still waiting for a dependency: the lifespan unwinds, no traceback.
    with contextlib.suppress(KeyboardInterrupt):
        eventloop.run(_run(app, _config(app, settings)))


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) that other processes may bind too (SO_REUSEPORT):
    the kernel then spreads new connections over them, each with its own accept queue."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(build: Callable[[], FastAPI], settings: ServiceSettings, index: int) -> None:
    # a fresh interpreter (spawn): logging is configured here, the settings were checked
    configure_logging(settings.log_level, json=settings.environment == "production")
    structlog.contextvars.bind_contextvars(worker=index)
    app = build()
    with contextlib.suppress(KeyboardInterrupt):
        eventloop.run(
            _run(
                app,
                _config(app, settings),
                lambda: [_reuse_port_socket(settings.host, settings.port)],
            )
        )


def serve_workers(build: Callable[[], FastAPI], settings: ServiceSettings, workers: int) -> None:
    """Run `workers` processes sharing the service's port through SO_REUSEPORT, each
    building its own app with `build` (a module-level function or a partial of one: it is
    pickled) and running its own lifespan; with one worker, `serve` in this process.

    This process only watches them. SIGTERM/SIGINT are passed on, and each worker drains
    and closes as `serve` does. A worker that ends on its own (a failed start, a crash)
    stops the others and this process exits with its code, so the process manager restarts
    the service whole rather than it running on short of a worker without anyone knowing.
    Their metrics are shared through a private directory, removed at exit (tiendo.metrics).
    """
    if workers == 1:
        serve(build(), settings)
        return
    _prepare(settings)
    if settings.port == 0:
        # each worker would bind a port of its own, and clients could reach only one
        log.error("unsafe_settings", problems=["several workers need a fixed port, not 0"])
        sys.exit(1)
    # Every worker's metrics go to files in a directory of this run alone, which any
    # worker's /metrics sums (tiendo.metrics): a fresh one, since files left by an earlier
    # run would be added in. Set before spawning, as prometheus-client chooses its
    # multiprocess value class when a worker first imports it.
    metrics_dir = tempfile.mkdtemp(prefix="tiendo-metrics-")
    if os.environ.get(MULTIPROC_DIR_ENV):
        log.warning("metrics_dir_replaced", previous=os.environ[MULTIPROC_DIR_ENV])
    os.environ[MULTIPROC_DIR_ENV] = metrics_dir
    try:
        _watch(build, settings, workers, metrics_dir)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _watch(
    build: Callable[[], FastAPI], settings: ServiceSettings, workers: int, metrics_dir: str
) -> None:
    # spawn, not fork: a worker must not inherit this process's state (logging, locks)
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(build, settings, i), name=f"worker-{i}")
        for i in range(workers)
    ]
    stopping = False
    reaped: set[int] = set()

    def reap(p: multiprocessing.process.BaseProcess) -> None:
        # its live gauges (requests in flight, heartbeats) leave the sums at once
        if p.pid is not None and p.exitcode is not None and p.pid not in reaped:
            reaped.add(p.pid)
            mark_process_dead(p.pid, metrics_dir)  # type: ignore[no-untyped-call]

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for p in processes:
            if p.pid is not None and p.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    for p in processes:
        p.start()
    log.info("workers_started", workers=workers, pids=[p.pid for p in processes])
    code = 0
    while not stopping and any(p.exitcode is None for p in processes):
        multiprocessing.connection.wait([p.sentinel for p in processes], timeout=1.0)
        ended = [p for p in processes if p.exitcode is not None]
        for p in ended:
            reap(p)
        if ended and not stopping:
            first = ended[0]
            # killed by a signal (a negative exitcode): a failure all the same
            code = abs(first.exitcode or 0)
            (log.error if code else log.info)(
                "worker_exited", worker=first.name, exit_code=first.exitcode
            )
            stop()
    deadline = time.monotonic() + _WORKER_STOP_SECONDS
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.exitcode is None:
            log.warning("worker_killed", worker=p.name, after_seconds=_WORKER_STOP_SECONDS)
            p.kill()
            p.join()
        reap(p)
    sys.exit(code)
