"""Fuzzing against the OpenAPI schema the notifier serves (schemathesis): every operation,
with valid and invalid requests, must never answer 5xx, and every answer must be what the
schema says — status, content type, headers and body.

The server is a real `tiendo notifier serve` process on the real broker and database, with
a unit tree and a campaign, and requests carry the suite's admin credential (the auditor's
for the audit log, which is the auditor's alone), so they get past authentication into
validation, the reads, the contacts, silences and policies. The
two promises are two tests: Hypothesis stops exploring an operation at its first failure,
so a schema mismatch must not keep the fuzzer from the 5xx behind it. One check is left
out: `positive_data_acceptance`, which expects a 2xx for any request the schema allows —
but the schema cannot know the unit tree, so a well-formed contact for a unit that does
not exist rightly gets 404, and a silence that ends before it starts rightly gets 422."""

from collections.abc import AsyncIterator

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from devtools.localstack import KafkaBroker, PostgresServer
from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from tests.ingest.test_ingest_api import NOW
from tests.support.fuzz import (
    FUZZ,
    Found,
    FuzzCase,
    assert_a_4xx,
    plausible_draw,
    served_on_a_world,
)
from tests.support.identities import ADMIN, AUDITOR
from tests.support.stack import Topics, notifier_process
from tests.support.world import WARDS


@pytest.fixture(scope="module")
async def server(
    postgres: PostgresServer,
    template_db: str,
    kafka: KafkaBroker,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[str]:
    """One notifier process for the whole run (the fuzzer sends thousands of requests)."""
    log = tmp_path_factory.mktemp("fuzz")
    async with served_on_a_world(
        postgres,
        template_db,
        NOW,
        lambda dsn: notifier_process(dsn, kafka.bootstrap, Topics.unique(), log / "notifier.log"),
    ) as process:
        yield process.url


# The schema a default-configured notifier serves (test_the_served_schema_is_the_one_fuzzed
# checks the process below serves the same); building the app connects to nothing.
SERVED = create_app(NotifierSettings.model_construct()).openapi()
schema = schemathesis.openapi.from_dict(SERVED)


def test_the_served_schema_is_the_one_fuzzed(server: str) -> None:
    assert httpx.get(f"{server}/openapi.json").json() == SERVED


def credential(path: str) -> dict[str, str]:
    """The admin's; the auditor's for the audit log, which is the auditor's alone."""
    return AUDITOR if path == "/v1/audit" else ADMIN


# Each distinct 5xx the fuzzer found, as the smallest request that shows it: the fuzzer
# draws each only now and then, these send it every time. (method, path, query, body)
BIG = 2**63  # one past PostgreSQL's bigint
POLICY = {"causes": [{"code": "a", "vi": "a", "en": "a"}]}
FOUND: dict[str, Found] = {
    "a link lifetime under a second": (
        "PUT",
        "/v1/campaigns/c1/explanation-policy",
        None,
        {**POLICY, "link_ttl_days": 1e-9},
    ),
    "a NUL in a cause": (
        "PUT",
        "/v1/campaigns/c1/explanation-policy",
        None,
        {"causes": [{"code": "a", "vi": "\0", "en": "a"}]},
    ),
    "a NUL in the alerts' campaign": ("GET", "/v1/alerts", {"campaign": "\0"}, None),
    "a NUL in the alerts' unit": ("GET", "/v1/alerts", {"unit": "\0"}, None),
    "a NUL in the notifications' campaign": ("GET", "/v1/notifications", {"campaign": "\0"}, None),
    "a NUL in the notifications' recipient": (
        "GET",
        "/v1/notifications",
        {"recipient": "\0"},
        None,
    ),
    "an alert id past bigint": ("GET", "/v1/notifications", {"alert_id": BIG}, None),
    "a NUL in a silence's comment": (
        "POST",
        "/v1/silences",
        None,
        {"rule": "stale", "ends_at": "2099-01-01T00:00:00Z", "comment": "\0"},
    ),
    "a NUL in a silence's author": (
        "POST",
        "/v1/silences",
        None,
        {"rule": "stale", "ends_at": "2099-01-01T00:00:00Z", "created_by": "a\0"},
    ),
    "a silence id past bigint": ("DELETE", f"/v1/silences/{BIG}", None, None),
    "a NUL in the audit's actor": ("GET", "/v1/audit", {"actor": "\0"}, None),
    "a NUL in the audit's action": ("GET", "/v1/audit", {"action": "\0"}, None),
    "a NUL in the audit's subject": ("GET", "/v1/audit", {"subject": "\0"}, None),
    "an audit id past bigint": ("GET", "/v1/audit", {"before": BIG}, None),
}


@pytest.mark.parametrize("found", FOUND.values(), ids=FOUND.keys())
def test_what_the_fuzzer_found_gets_a_4xx(found: Found, server: str) -> None:
    assert_a_4xx(server, found, credential(found[1]))


def make_plausible(case: FuzzCase) -> None:
    """Point half the valid cases at the world's campaign, a real unit and its indicator,
    so that the fuzzer also gets past the 404s and empty lists into the campaign's
    briefing, policies and the units' contacts, and 200s are checked against the schema
    too. A valid value replaced by another valid one keeps the case valid."""
    if (draw := plausible_draw(case)) is None:
        return
    unit = (*WARDS, "001", "01")[draw % 5]
    for values in (case.path_parameters, case.query):
        for key in ("campaign_id", "campaign"):
            if values and key in values:
                values[key] = "c1"
        if values and "unit" in values:
            values["unit"] = unit
        if values and "indicator" in values:
            values["indicator"] = "cccd_collected"


@pytest.mark.slow
@schema.parametrize()
@FUZZ
def test_no_request_gets_a_5xx(case: FuzzCase, server: str) -> None:
    make_plausible(case)
    case.call_and_validate(
        base_url=server, headers=credential(case.path), checks=[not_a_server_error], timeout=60
    )


@pytest.mark.slow
@schema.parametrize()
@FUZZ
def test_every_answer_is_one_the_schema_describes(case: FuzzCase, server: str) -> None:
    make_plausible(case)
    case.call_and_validate(
        base_url=server,
        headers=credential(case.path),
        excluded_checks=[positive_data_acceptance],
        timeout=60,
    )
