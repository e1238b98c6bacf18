"""structlog configured once: one processor chain for structlog and stdlib loggers."""

import logging
import sys
from typing import Any

import structlog

_SECRET_KEYS = frozenset({"token", "authorization", "password", "secret", "dsn"})


def _redact(_: Any, __: str, event_dict: structlog.typing.EventDict) -> structlog.typing.EventDict:
    # A secret must never reach a log line, even when a caller passes one by mistake.
    for key in event_dict.keys() & _SECRET_KEYS:
        event_dict[key] = "***"
    return event_dict


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Route structlog and the stdlib through one chain; JSON in production, console in dev."""
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at INFO/ERROR; keep its noise at WARNING.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger bound to `name`; safe to call at import time (configuration is lazy)."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
