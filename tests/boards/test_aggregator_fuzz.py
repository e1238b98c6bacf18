"""Fuzzing against the OpenAPI schema the aggregator serves (schemathesis): every operation,
with valid and invalid requests, must never answer 5xx, and every answer must be what the
schema says — status, content type, headers and body.

The server is a real `tiendo aggregator serve` process on the real broker and database,
with a unit tree and a campaign, and requests carry the suite's admin credential, so they
get past authentication into validation, the reads and the admin writes. The two promises
are two tests: Hypothesis stops exploring an operation at its first failure, so a schema
mismatch must not keep the fuzzer from the 5xx behind it. One check is left out:
`positive_data_acceptance`, which expects a 2xx for any request the schema allows — but the
schema cannot know the unit tree or the campaigns, so a well-formed read of a campaign that
does not exist rightly gets 404, and a campaign due before it starts rightly gets 422."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from devtools.localstack import KafkaBroker, PostgresServer
from services.aggregator.app import create_app
from services.aggregator.settings import AggregatorSettings
from tests.ingest.test_ingest_api import NOW
from tests.support.fuzz import (
    FUZZ,
    Found,
    FuzzCase,
    assert_a_4xx,
    plausible_draw,
    served_on_a_world,
)
from tests.support.identities import ADMIN
from tests.support.stack import Topics, aggregator_process
from tests.support.world import WARDS


@pytest.fixture(scope="module")
async def server(
    postgres: PostgresServer,
    template_db: str,
    kafka: KafkaBroker,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[str]:
    """One aggregator process for the whole run (the fuzzer sends thousands of requests)."""
    log = tmp_path_factory.mktemp("fuzz")
    async with served_on_a_world(
        postgres,
        template_db,
        NOW,
        lambda dsn: aggregator_process(
            dsn, kafka.bootstrap, Topics.unique(), log / "aggregator.log", environment="test"
        ),
    ) as process:
        yield process.url


# The schema a default-configured aggregator serves (test_the_served_schema_is_the_one_fuzzed
# checks the process below serves the same); building the app connects to nothing.
SERVED = create_app(AggregatorSettings.model_construct()).openapi()
schema = schemathesis.openapi.from_dict(SERVED)


def test_the_served_schema_is_the_one_fuzzed(server: str) -> None:
    assert httpx.get(f"{server}/openapi.json").json() == SERVED


# Each distinct 5xx the fuzzer found, as the smallest request that shows it: the fuzzer
# draws each only now and then, these send it every time. (method, path, query, body)
def _campaign(**more: Any) -> dict[str, Any]:
    """A campaign body the schema allows, with `more` in it."""
    return {
        "name": "x",
        "starts_at": "2030-01-01T00:00:00Z",
        "deadline": "2030-02-01T00:00:00Z",
        "indicators": ["cccd_collected"],
        **more,
    }


FOUND: dict[str, Found] = {
    "a parent that does not exist": (
        "PUT",
        "/v1/units",
        None,
        [{"code": "x1", "name": "x", "level": 2, "parent_code": "nope"}],
    ),
    "a unit twice, with a contact": (
        "PUT",
        "/v1/units",
        None,
        [{"code": "x2", "name": "x", "level": 1, "chief_phone": "1"}] * 2,
    ),
    "a NUL in a unit's name": (
        "PUT",
        "/v1/units",
        None,
        [{"code": "x3", "name": "\0", "level": 1}],
    ),
    "a NUL in a chief's name": (
        "PUT",
        "/v1/units",
        None,
        [{"code": "x4", "name": "x", "level": 1, "chief_name": "\0"}],
    ),
    "a NUL in a campaign's name": (
        "PUT",
        "/v1/campaigns/c9",
        None,
        _campaign(name="\0"),
    ),
    "a campaign silent for longer than a duration holds": (
        "PUT",
        "/v1/campaigns/c9",
        None,
        _campaign(stale_after_seconds=2**40),
    ),
    "a campaign silent for a negative eon": (
        "PUT",
        "/v1/campaigns/c9",
        None,
        _campaign(stale_after_seconds=-(2**58)),
    ),
    "a target past bigint": (
        "PUT",
        "/v1/campaigns/c1/targets",
        None,
        [{"unit": WARDS[0], "indicator": "cccd_collected", "target": 2**63}],
    ),
    "a NUL in a reader's units": (
        "POST",
        "/v1/identities",
        None,
        {"name": "r1", "role": "reader", "units": ["\0"]},
    ),
}


@pytest.mark.parametrize("found", FOUND.values(), ids=FOUND.keys())
def test_what_the_fuzzer_found_gets_a_4xx(found: Found, server: str) -> None:
    assert_a_4xx(server, found, ADMIN)


def make_plausible(case: FuzzCase) -> None:
    """Point half the valid cases at the world's campaign, a real unit and its indicator,
    so that the fuzzer also gets past the 404s into the reads and writes of a campaign
    that exists, and 200s are checked against the schema too. A valid value replaced by
    another valid one keeps the case valid."""
    if (draw := plausible_draw(case)) is None:
        return
    path = case.path_parameters or {}
    for key in ("campaign_id", "other_id"):
        if key in path:
            path[key] = "c1"
    for key in ("code", "unit"):
        if key in path:
            path[key] = (*WARDS, "001", "01")[draw % 5]
    if case.query and "indicator" in case.query:
        case.query["indicator"] = "cccd_collected"


@pytest.mark.slow
@schema.parametrize()
@FUZZ
def test_no_request_gets_a_5xx(case: FuzzCase, server: str) -> None:
    make_plausible(case)
    case.call_and_validate(base_url=server, headers=ADMIN, checks=[not_a_server_error], timeout=60)


@pytest.mark.slow
@schema.parametrize()
@FUZZ
def test_every_answer_is_one_the_schema_describes(case: FuzzCase, server: str) -> None:
    make_plausible(case)
    case.call_and_validate(
        base_url=server,
        headers=ADMIN,
        excluded_checks=[positive_data_acceptance],
        timeout=60,
    )
