"""Fuzzing against the OpenAPI schema ingest serves (schemathesis): every operation, with
valid and invalid requests, must never answer 5xx and every answer must be what the
schema says — status, content type, headers and body.

The server is a real `tiendo ingest serve` process on the real broker and database, and
requests carry a valid token, so they get past authentication into validation and Kafka.
One check is left out: `positive_data_acceptance`, which expects a 2xx for any request
the schema allows — but the schema cannot know the unit tree or the catalogue, so a
well-formed event for a unit that does not exist rightly gets 422."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from devtools.localstack import KafkaBroker, PostgresServer, free_port
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from tests.ingest.test_ingest_api import NOW
from tests.support.databases import clone_database
from tests.support.fuzz import until_ready
from tests.support.stack import ServiceProcess, Topics, service_env
from tests.support.world import build_world, issue_token


@pytest.fixture(scope="module")
async def server(
    postgres: PostgresServer,
    template_db: str,
    kafka: KafkaBroker,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[str, str]]:
    """One ingest process for the whole run (the fuzzer sends thousands of requests)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres.dsn())
    await clone_database(admin, template_db, name)
    dsn = postgres.dsn(name)
    await build_world(dsn, starts_at=NOW)
    token = await issue_token(dsn)
    port = free_port()
    process = ServiceProcess(
        "ingest",
        {
            **service_env(
                "TIENDO_INGEST_", database_url=dsn, kafka_bootstrap=kafka.bootstrap, port=port
            ),
            **Topics.unique().env("TIENDO_INGEST_"),
        },
        tmp_path_factory.mktemp("fuzz") / "ingest.log",
    )
    process.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        await until_ready(base_url)
        yield base_url, token
        log = process.log.read_text()
        assert "Traceback" not in log, log[-4000:]
    finally:
        process.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# The schema a default-configured ingest serves (test_the_served_schema_is_the_one_fuzzed
# checks the process below serves the same); building the app connects to nothing.
SERVED = create_app(IngestSettings.model_construct()).openapi()
schema = schemathesis.openapi.from_dict(SERVED)
# An EventBatch is bytes: the fuzzer sends what it draws for `format: binary` as it is.
schemathesis.serializer.alias("application/x-protobuf", "application/octet-stream")
# A case of any operation: the tests read only its body and meta, not its operation's type.
FuzzCase = schemathesis.Case[Any]


def test_the_served_schema_is_the_one_fuzzed(server: tuple[str, str]) -> None:
    base_url, _ = server
    assert httpx.get(f"{base_url}/openapi.json").json() == SERVED


def make_plausible(case: FuzzCase) -> None:
    """Point half the valid JSON events at a real unit, indicator and time, so that the
    fuzzer also reaches Kafka and 202s are checked against the schema too. A valid value
    replaced by another valid one keeps the case valid."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    body = case.body
    events = body.get("events") if isinstance(body, dict) and "events" in body else [body]
    for event in events if isinstance(events, list) else []:
        if isinstance(event, dict) and hash(str(event.get("event_id"))) % 2 == 0:
            event["unit"] = "00004"
            event["indicator"] = "cccd_collected"
            event["occurred_at"] = datetime.now(UTC).isoformat()


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_request_gets_a_5xx_or_an_answer_the_schema_does_not_describe(
    case: FuzzCase, server: tuple[str, str]
) -> None:
    base_url, token = server
    make_plausible(case)
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        excluded_checks=[positive_data_acceptance],
        timeout=60,
    )
