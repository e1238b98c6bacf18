"""Every route has an owner (issue 16): docs/access.md lists each route of the three
services with its roles and what a reader outside its scope gets; this walks each service's
OpenAPI, fails on a route the table lacks (or a row nothing serves), and calls every route
as every kind of caller — none, an upstream's token, a reader inside and outside its
scope, an administrator, an auditor — against real Kafka and PostgreSQL. The answers must
follow the table's rule, and equal the cross-scope table docs/access.md shows."""

import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
from fastapi import FastAPI

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.notifier.app import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from tests.support.identities import ADMIN, AUDITOR, bearer, issue_identity
from tests.support.stack import ServiceKwargs, Topics, eventually, running, until_ready
from tests.support.world import build_world, issue_token
from tiendo.identity.model import Role

DOC = Path(__file__).resolve().parents[2] / "docs" / "access.md"
CALLERS = ("none", "ingest", "reader in", "reader out", "admin", "auditor")
# a reader of district 001: ward 00004 is inside its scope, ward 00010 (district 002) not
SCOPE = {"001", "00004", "00007"}
UNIT_IN, UNIT_OUT = "00004", "00010"
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
AS_OF = (START + timedelta(days=7)).isoformat()
ROW = re.compile(
    r"^\| (?P<services>[a-z, ]+) \| (?P<method>GET|POST|PUT|DELETE) \| (?P<paths>`.+?`) "
    r"\| (?P<roles>[a-z, ]+) \| (?P<outside>[^|]+) \|$"
)
SERVICES = ("ingest", "aggregator", "notifier")
# served by FastAPI itself, outside the schema
DOC_ROUTES = {("GET", "/docs"), ("GET", "/redoc"), ("GET", "/openapi.json")}


@dataclass(frozen=True)
class Owner:
    roles: frozenset[str] | None  # None: open to anyone
    outside: str  # what a reader gets outside its scope: 404, filtered, or —


def owners() -> dict[tuple[str, str, str], Owner]:
    """(service, method, path) → owner, from docs/access.md's route table."""
    table: dict[tuple[str, str, str], Owner] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m is None:
            continue
        roles = m["roles"].strip()
        owner = Owner(
            None if roles == "open" else frozenset(roles.split(", ")), m["outside"].strip()
        )
        for service in m["services"].split(", "):
            for path in re.findall(r"`([^`]+)`", m["paths"]):
                table[(service, m["method"], path)] = owner
    return table


def served(app: FastAPI) -> set[tuple[str, str]]:
    spec = app.openapi()
    return {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops} | DOC_ROUTES


class PathValues(dict[str, str]):
    """Path parameters: the unit a caller asks about, fixed values for the rest, and a
    placeholder for a parameter a new route brings (its row decides what it must answer)."""

    def __init__(self, unit: str) -> None:
        super().__init__(
            campaign_id="c1",
            other_id="c1",
            code=unit,
            unit=unit,
            name="nobody",
            silence_id="999999",
            event_id=f"access-{unit}",
        )

    def __missing__(self, key: str) -> str:
        return "x"


def expected(owner: Owner, caller: str) -> str:
    """The table's rule; `admitted` is any answer but 401, 403 and 5xx."""
    if owner.roles is None:
        return "200"
    if caller == "none":
        return "401"
    role = "reader" if caller.startswith("reader") else caller
    if role not in owner.roles:
        return "403"
    if caller == "reader out" and owner.outside.startswith("404"):
        return "404"
    if caller == "reader out" and owner.outside.startswith("filtered"):
        return "200 filtered"
    return "admitted"


def variants(path: str) -> list[tuple[str, dict[str, Any]]]:
    if path.endswith("/progress/{unit}"):
        return [("", {}), ("as_of", {"as_of": AS_OF})]
    if path.endswith("/compare/{other_id}"):
        return [("", {"indicator": "cccd_collected", "unit": "{unit}"})]
    if path.endswith("/leaderboard"):
        board = {"level": 3, "indicator": "cccd_collected", "limit": 1000}
        return [
            ("", board),
            ("as_of", {**board, "as_of": AS_OF}),
            ("csv", {**board, "format": "csv"}),
            ("xlsx", {**board, "format": "xlsx"}),
        ]
    return [("", {})]


def body(method: str, path: str, unit: str) -> Any:
    if path == "/v1/events":
        occurred = datetime.now(UTC).isoformat()
        return {"event_id": f"access-{unit}", "unit": unit, "indicator": "cccd_collected",
                "value": 1, "occurred_at": occurred}  # fmt: skip
    if path in ("/v1/units", "/v1/campaigns/{campaign_id}/targets"):
        return []
    return {} if method in ("POST", "PUT") else None


def units_in(response: httpx.Response, path: str, params: dict[str, Any]) -> set[str]:
    """The unit codes a list answer holds."""
    if params.get("format") == "csv":
        return {line.split(",")[1] for line in response.text.splitlines()[1:] if line}
    if params.get("format") == "xlsx":
        sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
        assert sheet is not None
        cells = (str(c.value) for row in sheet.iter_rows() for c in row if c.value)
        return {c for c in cells if re.fullmatch(r"0\d{1,4}", c)}
    rows = response.json()
    if path.endswith("/leaderboard"):
        return {r["unit"]["code"] for r in rows["rows"]}
    if path == "/v1/alerts":
        return {r["unit"] for r in rows}
    return {r["recipient"] for r in rows}


@pytest.fixture
async def clients(
    database: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[dict[str, tuple[FastAPI, httpx.AsyncClient]]]:
    await build_world(database, starts_at=START)
    common: ServiceKwargs = {
        "database_url": database,
        "kafka_bootstrap": kafka.bootstrap,
        **topics.kwargs(),
    }
    apps = {
        "ingest": create_ingest(IngestSettings(**common)),
        "aggregator": create_aggregator(
            AggregatorSettings(**common, group_id=f"agg-{topics.events}", consume=False)
        ),
        "notifier": create_notifier(
            NotifierSettings(
                **common,
                group_id=f"ntf-{topics.progress}",
                webhook_url="http://127.0.0.1:9/hook",  # nobody listens: deliveries fail
                webhook_secret="test-webhook-secret",
                evaluate_every_seconds=0.5,
                group_wait_seconds=0,
                digest_times="",
                bottom_rank_n=0,
            )
        ),
    }
    async with (
        running(apps["ingest"]) as ingest,
        running(apps["aggregator"]) as aggregator,
        running(apps["notifier"]) as notifier,
    ):
        await until_ready(ingest)
        yield {
            "ingest": (apps["ingest"], ingest),
            "aggregator": (apps["aggregator"], aggregator),
            "notifier": (apps["notifier"], notifier),
        }


async def test_every_route_has_an_owner_and_answers_each_caller_as_the_table_says(
    clients: dict[str, tuple[FastAPI, httpx.AsyncClient]], database: str
) -> None:
    table = owners()
    routes = {s: served(app) for s, (app, _) in clients.items()}
    unowned = [(s, m, p) for s in SERVICES for m, p in sorted(routes[s]) if (s, m, p) not in table]
    assert unowned == [], f"routes missing from docs/access.md: {unowned}"
    stale = [k for k in table if (k[1], k[2]) not in routes[k[0]]]
    assert stale == [], f"docs/access.md rows no service serves: {stale}"

    headers = {
        "none": {},
        "ingest": bearer(await issue_token(database, "access-upstream")),
        "reader in": bearer(await issue_identity(database, "chief-001", Role.reader, ["001"])),
        "admin": ADMIN,
        "auditor": AUDITOR,
    }
    headers["reader out"] = headers["reader in"]
    notifier = clients["notifier"][1]

    async def alerts_and_messages_outside_the_scope() -> None:
        for path in ("/v1/alerts", "/v1/notifications"):
            r = await notifier.get(path, headers=ADMIN, params={"limit": 1000})
            assert units_in(r, path, {}) - SCOPE, f"{path}: nothing outside 001 yet"

    await eventually(alerts_and_messages_outside_the_scope)

    measured: list[str] = []
    unexpected: list[str] = []
    # grouped as the doc reads: by service, open routes last, then by path
    order = sorted(
        table.items(),
        key=lambda kv: (SERVICES.index(kv[0][0]), kv[1].roles is None, kv[0][2], kv[0][1]),
    )
    for (service, method, path), owner in order:
        client = clients[service][1]
        for label, params in variants(path):
            cells = []
            for caller in CALLERS:
                unit = UNIT_OUT if caller == "reader out" else UNIT_IN
                url = path.format_map(PathValues(unit))
                asked = {
                    k: v.format_map(PathValues(unit)) if isinstance(v, str) else v
                    for k, v in params.items()
                }
                r = await client.request(
                    method, url, params=asked, json=body(method, path, unit),
                    headers=headers[caller],
                )  # fmt: skip
                got = str(r.status_code)
                if r.status_code == 200 and owner.outside.startswith("filtered"):
                    outside = units_in(r, path, params) - SCOPE
                    if caller == "reader out":
                        got += " filtered" if not outside else f" LEAKS {sorted(outside)}"
                want = expected(owner, caller)
                ok = (
                    r.status_code not in (401, 403) and r.status_code < 500
                    if want == "admitted"
                    else got == want
                )
                if not ok:
                    unexpected.append(f"{service} {method} {url} {params} as {caller}: {got}")
                cells.append(got)
            route = f"{method} `{path}`" + (f" ({label})" if label else "")
            measured.append(f"| {service} | {route} | " + " | ".join(cells) + " |")
    assert unexpected == [], "\n".join(unexpected)
    header = ["| service | route | " + " | ".join(CALLERS) + " |", "|---|---|" + "---|" * 6]
    shown = DOC.read_text(encoding="utf-8").split("<!-- cross-scope:start -->\n")[1]
    shown = shown.split("<!-- cross-scope:end -->")[0]
    assert shown == "\n".join(header + measured) + "\n", "\n".join(header + measured)


async def test_a_reader_sees_masked_addresses_and_an_admin_the_real_ones(
    clients: dict[str, tuple[FastAPI, httpx.AsyncClient]], database: str
) -> None:
    notifier = clients["notifier"][1]
    reader = bearer(await issue_identity(database, "hq", Role.reader))

    async def logged() -> list[dict[str, Any]]:
        r = await notifier.get("/v1/notifications", headers=ADMIN)
        assert r.status_code == 200
        assert r.json(), r.text
        rows: list[dict[str, Any]] = r.json()
        return rows

    as_admin = await eventually(logged)
    assert {n["address"] for n in as_admin} == {"http://127.0.0.1:9/hook"}
    as_reader = (await notifier.get("/v1/notifications", headers=reader)).json()
    assert as_reader
    assert {n["address"] for n in as_reader} == {"http://127.0.0.1/***"}
