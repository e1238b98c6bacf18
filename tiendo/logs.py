"""structlog configured once: one processor chain for structlog and stdlib loggers.

JSON lines in production (one object per line, for a log shipper), a readable console in
development. Request and batch ids come from contextvars (`RequestIdMiddleware` binds
`request_id`), and a redaction step keeps secrets out of every line, whoever logs them.
"""

import logging
import re
import sys
from typing import Any

import structlog

# Keys whose values are secrets, exactly or as the last word of a snake_case key
# (`admin_token`, `webhook_secret`); `token_file` or `token_count` are not secrets.
_SECRET_KEYS = frozenset(
    {"token", "authorization", "password", "passwd", "secret", "dsn", "api_key", "cookie"}
)
_SECRET_SUFFIXES = ("_token", "_secret", "_password", "_dsn", "_api_key", "_private_key")
_REDACTED = "***"
# Secrets inside free text: bearer credentials and the password of a URL (a DSN).
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@", re.I)


def _secret_key(key: str) -> bool:
    k = key.lower().replace("-", "_")
    return k in _SECRET_KEYS or k.endswith(_SECRET_SUFFIXES)


def scrub(text: str) -> str:
    """`text` with bearer credentials and URL passwords replaced by ***."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} {_REDACTED}", text)
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{_REDACTED}@", text)


def _clean(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if depth >= 3:
        return value
    if isinstance(value, dict):
        return {
            k: _REDACTED if isinstance(k, str) and _secret_key(k) else _clean(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_clean(v, depth + 1) for v in value)
    return value


def _redact(_: Any, __: str, event_dict: structlog.typing.EventDict) -> structlog.typing.EventDict:
    # A secret must never reach a log line, even when a caller passes one by mistake.
    for key, value in list(event_dict.items()):
        if key.startswith("_"):
            continue  # structlog's own records (e.g. the stdlib record)
        event_dict[key] = _REDACTED if _secret_key(key) else _clean(value)
    return event_dict


class _DropDuplicateAsgiError(logging.Filter):
    """uvicorn logs an unhandled exception again without the request's context; the
    RequestIdMiddleware has already logged it once with the request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Exception in ASGI application")


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
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a module-level logger used before configure_logging (an import-time
        # side effect, a test) would otherwise keep structlog's defaults for good. Lines
        # are per request or per batch, never per event, so the extra bind is negligible.
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                # Tracebacks are text made after the chain above: scrub them too.
                _redact,
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
    uvicorn_error = logging.getLogger("uvicorn.error")
    for f in [f for f in uvicorn_error.filters if isinstance(f, _DropDuplicateAsgiError)]:
        uvicorn_error.removeFilter(f)
    uvicorn_error.addFilter(_DropDuplicateAsgiError())


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger bound to `name`; safe to call at import time (configuration is lazy)."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
