"""Running a service's ASGI app under uvicorn with tiendo's logging."""

import uvicorn
from fastapi import FastAPI

from tiendo import eventloop
from tiendo.logs import configure_logging
from tiendo.settings import ServiceSettings


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run until SIGINT/SIGTERM; uvicorn then drains requests and runs the lifespan exit."""
    configure_logging(settings.log_level, json=settings.environment == "production")
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
    )
    eventloop.run(uvicorn.Server(config).serve())
