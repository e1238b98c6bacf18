"""Waiting at start for PostgreSQL and Kafka: one info line each, then quiet, and one
clear error when a dependency is still unreachable after the timeout.

Clients made before their server answers fill the log (aiokafka logs every refused
connection at ERROR; PostgreSQL logs a FATAL line for every connection made while it is
still starting), so the services probe first and connect once the probe succeeds.
"""

import asyncio
import struct
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import asyncpg

from tiendo.logs import get_logger

log = get_logger(__name__)
_PROBE_TIMEOUT = 2.0
_RETRY_EVERY = 0.5
_CLIENT_ID = b"tiendo-startup"


class DependencyUnavailable(Exception):
    """A dependency did not answer within the start-up timeout."""


def _framed(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    # request header v1: api_key, api_version, correlation_id, client_id
    header = struct.pack(">hhih", api_key, version, correlation_id, len(_CLIENT_ID)) + _CLIENT_ID
    return struct.pack(">i", len(header) + len(body)) + header + body


def metadata_request() -> bytes:
    """A framed Metadata (v4) request naming no topic: the broker lists its live brokers.

    The port accepts connections before the broker is unfenced, when clients still fail;
    Metadata v4 (served by Kafka 3.x and 4.x) lists only unfenced brokers.
    """
    # body v4: an empty topic array, allow_auto_topic_creation=false
    return _framed(3, 4, 1, struct.pack(">ib", 0, 0))


def brokers_in(payload: bytes) -> int:
    """How many live brokers a Metadata v4 response (without its size prefix) lists."""
    correlation_id, _throttle, brokers = struct.unpack_from(">iii", payload)
    if correlation_id != 1:
        raise ConnectionError(f"unexpected correlation id {correlation_id}")
    return int(brokers)


def find_coordinator_request(group: str) -> bytes:
    """A framed FindCoordinator (v1) request for a consumer group."""
    key = group.encode()
    return _framed(10, 1, 2, struct.pack(">h", len(key)) + key + struct.pack(">b", 0))


def coordinator_found(payload: bytes) -> bool:
    """Whether a FindCoordinator v1 response names the group's coordinator (error 0)."""
    correlation_id, _throttle, error_code = struct.unpack_from(">iih", payload)
    if correlation_id != 2:
        raise ConnectionError(f"unexpected correlation id {correlation_id}")
    return bool(error_code == 0)


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> bytes:
    writer.write(request)
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


async def _kafka_answers(bootstrap: str, group: str | None) -> None:
    errors = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT):
                reader, writer = await asyncio.open_connection(host or "127.0.0.1", int(port))
                try:
                    if brokers_in(await _exchange(reader, writer, metadata_request())) == 0:
                        errors.append(f"{server}: no live broker yet")
                        continue
                    # A consumer's first FindCoordinator is what creates the offsets topic;
                    # until it exists aiokafka logs each retry of the join at ERROR.
                    if group is None or coordinator_found(
                        await _exchange(reader, writer, find_coordinator_request(group))
                    ):
                        return
                    errors.append(f"{server}: no coordinator for group {group} yet")
                finally:
                    writer.close()
        except (
            OSError,
            TimeoutError,
            ValueError,
            struct.error,
            asyncio.IncompleteReadError,
        ) as exc:
            errors.append(f"{server}: {exc or type(exc).__name__}")
    raise ConnectionError("; ".join(errors))


def _postgres_tcp(dsn: str) -> tuple[str, int] | None:
    """The DSN's one TCP host and port; None for a Unix socket or a list of hosts."""
    try:
        parts = urlsplit(dsn)
        return (parts.hostname, parts.port or 5432) if parts.hostname else None
    except ValueError:
        return None


def _postgres_address(dsn: str) -> str:
    # host and port only: the rest of a DSN may hold a password
    tcp = _postgres_tcp(dsn)
    return f"{tcp[0]}:{tcp[1]}" if tcp else "the DSN's host"


async def _postgres_answers(dsn: str) -> None:
    # A bare TCP connection first: PostgreSQL logs nothing for one that sends no startup
    # packet, but a FATAL line for a login attempted while it is still starting.
    if (tcp := _postgres_tcp(dsn)) is not None:
        async with asyncio.timeout(_PROBE_TIMEOUT):
            _, writer = await asyncio.open_connection(*tcp)
        writer.close()
    conn = await asyncpg.connect(dsn, timeout=_PROBE_TIMEOUT)
    await conn.close()


async def _wait(
    what: str,
    address: str,
    probe: Callable[[], Awaitable[None]],
    give_up_after: float,
    *,
    keep_waiting: bool = False,
) -> None:
    deadline: float | None = time.monotonic() + give_up_after
    logged = False
    while True:
        try:
            await probe()
            return
        except (OSError, TimeoutError, asyncpg.CannotConnectNowError) as exc:
            error = str(exc) or type(exc).__name__
        except asyncpg.PostgresError as exc:
            # answered, and refused (no such database or role): waiting will not help
            raise DependencyUnavailable(f"{what} at {address} refused: {exc}") from exc
        if deadline is not None and time.monotonic() >= deadline:
            message = f"{what} at {address} did not answer within {give_up_after:g} s ({error})"
            if not keep_waiting:
                raise DependencyUnavailable(message)
            log.error("dependency_unavailable", error=message, still_waiting=True)
            deadline = None
        if not logged:
            logged = True
            log.info(f"waiting_for_{what.lower()}", at=address, timeout_seconds=give_up_after)
        await asyncio.sleep(_RETRY_EVERY)


async def wait_for_postgres(dsn: str, give_up_after: float) -> None:
    """Return once PostgreSQL accepts a login; DependencyUnavailable after `give_up_after` s."""
    await _wait("PostgreSQL", _postgres_address(dsn), lambda: _postgres_answers(dsn), give_up_after)


async def wait_for_kafka(
    bootstrap: str,
    give_up_after: float,
    *,
    group: str | None = None,
    keep_waiting: bool = False,
) -> None:
    """Return once a Kafka broker serves requests; DependencyUnavailable after `give_up_after` s,
    or with `keep_waiting` one error line then and the wait goes on (a service that serves
    without Kafka, answering 503 meanwhile). With `group`, the broker must also name the
    consumer group's coordinator."""
    await _wait(
        "Kafka",
        bootstrap,
        lambda: _kafka_answers(bootstrap, group),
        give_up_after,
        keep_waiting=keep_waiting,
    )
