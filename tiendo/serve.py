"""Running a service's ASGI app under uvicorn with tiendo's logging."""

import contextlib
import logging
import signal
import sys

import uvicorn
from fastapi import FastAPI

from tiendo import eventloop
from tiendo.database import MigrationsPending
from tiendo.logs import configure_logging, get_logger
from tiendo.settings import ServiceSettings
from tiendo.startup import DependencyUnavailable

log = get_logger(__name__)


async def _run(app: FastAPI, config: uvicorn.Config) -> None:
    # The lifespan runs here rather than inside uvicorn, which would log a dependency that
    # never came as a traceback: the operator gets one line saying what did not answer.
    try:
        async with app.router.lifespan_context(app):
            server = uvicorn.Server(config)
            # uvicorn raises the signal that stopped it again once it has drained requests;
            # it must not kill the process before the lifespan has flushed and closed.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
            await server.serve()
            # Stopping: the broker may be going down at the same moment (make dev stops
            # every process at once), and aiokafka logs each refused reconnect of a client
            # being closed at ERROR. tiendo's own lines still say what the stop did.
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    # A role-connected service finding migrations it may not apply: waiting would not help,
    # and the line says who must act.
    except (DependencyUnavailable, MigrationsPending) as exc:
        log.error("startup_failed", error=str(exc))
        sys.exit(1)


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run until SIGINT/SIGTERM; uvicorn then drains requests, and the lifespan exits."""
    configure_logging(settings.log_level, json=settings.environment == "production")
    if problems := settings.unsafe():
        # one line, before anything connects: a weak secret is the operator's to fix
        log.error("unsafe_settings", problems=problems)
        sys.exit(1)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=20,
    )
    # Ctrl-C while still waiting for a dependency: the lifespan unwinds, no traceback.
    with contextlib.suppress(KeyboardInterrupt):
        eventloop.run(_run(app, config))
