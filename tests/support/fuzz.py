"""What the services' fuzz tests share (schemathesis against each service's own OpenAPI):
a real service process on a database of its own holding a world, ready before the first
request, and whose log may hold no traceback when the fuzzer is done."""

import re
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import schemathesis
from hypothesis import HealthCheck, settings

from devtools.localstack import PostgresServer
from tests.support.databases import clone_database
from tests.support.stack import ServiceProcess, eventually
from tests.support.world import build_world

# Enough examples per operation to draw the odd cases, bounded so that a file runs in
# minutes: no deadline (a write that re-plans a campaign takes a while).
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# A case of any operation: the tests read only its parameters and meta, not its type.
FuzzCase = schemathesis.Case[Any]
# A 5xx the fuzzer found, as the smallest request that shows it (the fuzzer draws each
# only now and then; sent as it is, every time): method, path, query, JSON body.
Found = tuple[str, str, dict[str, Any] | None, Any]


def assert_a_4xx(base_url: str, found: Found, headers: dict[str, str]) -> None:
    method, path, query, body = found
    r = httpx.request(method, f"{base_url}{path}", params=query, json=body, headers=headers)
    assert 400 <= r.status_code < 500, f"{r.status_code} {r.text}"


def plausible_draw(case: FuzzCase) -> int | None:
    """For half the valid cases, a number to pick real values by (a campaign, a unit) in
    place of the drawn ones, so that the fuzzer also gets past the 404s; None for the rest.
    A valid value replaced by another valid one keeps the case valid."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    draw = zlib.crc32(repr((case.path_parameters, case.query)).encode())
    return None if draw % 2 else draw // 2


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT")


def tracebacks(log: str) -> list[str]:
    """Every traceback in a service's log, each after the line that says what failed."""
    lines = log.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            end = next((j for j in range(i + 1, len(lines)) if _LOG_LINE.match(lines[j])), None)
            found.append("\n".join(lines[max(i - 1, 0) : end]))
    return found


async def until_ready(base_url: str, timeout: float = 120) -> None:
    """Until the service at `base_url` answers /readyz with 200."""
    async with httpx.AsyncClient(base_url=base_url) as client:

        async def ready() -> None:
            try:
                assert (await client.get("/readyz")).status_code == 200
            except httpx.TransportError as exc:
                raise AssertionError(str(exc)) from exc

        await eventually(ready, timeout=timeout)


@asynccontextmanager
async def served_on_a_world(
    postgres: PostgresServer,
    template_db: str,
    starts_at: datetime,
    process_of: Callable[[str], ServiceProcess],
) -> AsyncIterator[ServiceProcess]:
    """`process_of(dsn)` started on a fresh database holding `build_world`'s tree and
    campaign, once ready; stopped after, and failing if its log holds a traceback."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres.dsn())
    await clone_database(admin, template_db, name)
    dsn = postgres.dsn(name)
    process = process_of(dsn)
    try:
        await build_world(dsn, starts_at=starts_at)
        process.start()
        await until_ready(process.url)
        yield process
        failed = tracebacks(Path(process.log).read_text())
        assert not failed, "\n\n".join(failed)
    finally:
        process.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
