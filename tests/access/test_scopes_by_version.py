"""A reader's scope is a set of unit versions, matched by version key on every route
(docs/access.md, "Unit scopes"), on Hà Nội's real trees of 2023 and 2025: since 1 July 2025
the official code `00004` names Phường Ba Đình (`00004@2025-07-01`) and the key `00004` the
retired Phường Trúc Bạch; district `001` (Quận Ba Đình) was abolished that day.

However a scope enters (the admin API, the CLI, an identity provider's `tiendo_units`), an
official code is read on the tree in force now and stored as that version's key; a code no
version of which is in force is refused, and a version's key names exactly that version."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator.app import create_app as create_aggregator
from tests.access.test_identities import tiendo
from tests.access.test_oidc import ISSUER, Provider
from tests.boards.live import serving
from tests.reference.test_version_keys_in_paths import BA_DINH, DEADLINE, START, TZ, load_hanoi
from tests.support.identities import ADMIN, bearer, issue_identity
from tests.support.stack import Topics, aggregator_settings, running
from tiendo.board import repository as board
from tiendo.identity import repository as identities
from tiendo.identity.model import NamedUnit, Role, read_scope

TRUC_BACH = "00004"  # the key of 00004's first version, closed on 1 July 2025
# a later version of a reused code, itself closed on 1 July 2025
VAN_MIEU = "00181@2025-01-01"
COMPARE = "/v1/campaigns/span/compare/prev"


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    p = Provider()
    async with serving(p.app, p.port):
        yield p


@pytest.fixture
async def aggregator(
    database: str, kafka: KafkaBroker, topics: Topics, provider: Provider
) -> AsyncIterator[httpx.AsyncClient]:
    """The aggregator on Hà Nội's trees (taking the provider's tokens too), with a campaign
    across the July 2025 cut-over and one of 2023 to compare it with."""
    settings = aggregator_settings(
        database, kafka.bootstrap, topics, consume=False,
        oidc_issuer=ISSUER, oidc_jwks_url=provider.jwks_url,
    )  # fmt: skip
    async with running(create_aggregator(settings)) as client:
        client.headers.update(ADMIN)
        await load_hanoi(client)
        for cid, starts_at, deadline in (
            ("span", START, DEADLINE),
            ("prev", datetime(2023, 5, 10, tzinfo=TZ), datetime(2023, 6, 30, tzinfo=TZ)),
        ):
            r = await client.put(
                f"/v1/campaigns/{cid}",
                json={
                    "name": cid,
                    "starts_at": starts_at.isoformat(),
                    "deadline": deadline.isoformat(),
                    "indicators": ["cccd_collected"],
                },
            )
            assert r.status_code == 200, r.text
        del client.headers["Authorization"]
        yield client


def compare(unit: str, day: int | None = None) -> str:
    """The comparison of `unit`; by default at the campaign's last day (after the cut-over)."""
    at_day = "" if day is None else f"&day={day}"
    return f"{COMPARE}?indicator=cccd_collected&unit={unit}{at_day}"


async def test_a_scope_is_matched_by_version_key_on_comparisons_and_versions_too(
    aggregator: httpx.AsyncClient, database: str
) -> None:
    # a reader of Trúc Bạch (stored as its key, as identities issued before keys were read)
    truc_bach = bearer(await issue_identity(database, "chief-truc-bach", Role.reader, [TRUC_BACH]))
    ba_dinh = bearer(await issue_identity(database, "chief-ba-dinh", Role.reader, [BA_DINH]))
    # `00004` at the campaign's moment is Ba Đình, a ward made of several old ones (Trúc
    # Bạch's among them): outside Trúc Bạch's scope, as progress already answered
    for path in (compare(TRUC_BACH), compare(BA_DINH), "/v1/campaigns/span/progress/00004"):
        r = await aggregator.get(path, headers=truc_bach)
        assert r.status_code == 404, (path, r.text)
    r = await aggregator.get(compare(TRUC_BACH), headers=ba_dinh)
    assert r.status_code == 200, r.text
    assert r.json()["unit"]["code"] == BA_DINH
    # on the tree of day 3 (23 June 2025) `00004` is Trúc Bạch: its own reader's, not Ba Đình's
    r = await aggregator.get(compare(TRUC_BACH, day=3), headers=truc_bach)
    assert r.status_code == 200, r.text
    assert r.json()["unit"]["code"] == TRUC_BACH
    assert (await aggregator.get(compare(TRUC_BACH, day=3), headers=ba_dinh)).status_code == 404
    # each reader sees the versions of the code that are its own
    for who, key in ((truc_bach, TRUC_BACH), (ba_dinh, BA_DINH)):
        r = await aggregator.get("/v1/units/00004/versions", headers=who)
        assert r.status_code == 200, r.text
        assert [v["key"] for v in r.json()] == [key]


async def test_an_official_code_is_stored_as_the_version_in_force_and_a_retired_one_refused(
    aggregator: httpx.AsyncClient,
) -> None:
    r = await aggregator.post(
        "/v1/identities",
        headers=ADMIN,
        json={"name": "chief-00004", "role": "reader", "units": ["00004"]},
    )
    assert r.status_code == 201, r.text
    issued = r.json()
    for path in ("/v1/units/00004", compare("00004")):
        r = await aggregator.get(path, headers=bearer(issued["secret"]))
        assert r.status_code == 200, (path, r.text)
    # the answer shows the scope stored
    assert (issued["units"], issued["unit_names"]) == ([BA_DINH], {BA_DINH: "Phường Ba Đình"})
    # a key names exactly its version, in force or not
    r = await aggregator.post(
        "/v1/identities",
        headers=ADMIN,
        json={"name": "chief-van-mieu", "role": "reader", "units": [VAN_MIEU]},
    )
    assert r.status_code == 201, r.text
    assert r.json()["units"] == [VAN_MIEU]
    # a code no version of which is in force is refused, whole
    r = await aggregator.post(
        "/v1/identities",
        headers=ADMIN,
        json={"name": "chief-001", "role": "reader", "units": ["00004", "001"]},
    )
    assert r.status_code == 422, r.text
    assert "official code 001 names no unit in force" in r.json()["detail"]
    assert "closed on 2025-07-01" in r.json()["detail"]
    listed = (await aggregator.get("/v1/identities", headers=ADMIN)).json()
    scopes = {i["name"]: i["units"] for i in listed}
    assert (scopes["chief-00004"], scopes["chief-van-mieu"]) == ([BA_DINH], [VAN_MIEU])
    assert "chief-001" not in scopes


async def test_the_cli_stores_the_version_in_force_shows_it_and_refuses_a_retired_code(
    aggregator: httpx.AsyncClient, database: str
) -> None:
    made = tiendo(database, "create", "chief-00004", "--role", "reader", "--units", "00004")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    listed = [json.loads(line) for line in tiendo(database, "list", "--json").stdout.splitlines()]
    assert {i["name"]: i["units"] for i in listed}["chief-00004"] == [BA_DINH]
    assert (await aggregator.get("/v1/units/00004", headers=bearer(secret))).status_code == 200
    # the operator sees the version each code became; stdout is the secret alone (scripts
    # capture it)
    assert f"{BA_DINH} (Phường Ba Đình)" in made.stderr
    assert "\n" not in secret

    refused = tiendo(database, "create", "chief-001", "--role", "reader", "--units", "001")
    assert refused.returncode != 0
    assert "official code 001 names no unit in force" in refused.stderr
    assert refused.stdout == ""


async def test_a_providers_units_claim_is_read_as_versions_by_the_same_rule(
    aggregator: httpx.AsyncClient, provider: Provider
) -> None:
    code = bearer(provider.token(tiendo_role="reader", tiendo_units=["00004"]))
    for path in ("/v1/units/00004", compare("00004")):
        r = await aggregator.get(path, headers=code)
        assert r.status_code == 200, (path, r.text)
    assert (await aggregator.get(compare("00004", day=3), headers=code)).status_code == 404
    for names in (["99999"], ["00004@x"]):
        unknown = bearer(provider.token(tiendo_role="reader", tiendo_units=names))
        assert (await aggregator.get("/v1/units/01", headers=unknown)).status_code == 401
    retired = bearer(provider.token(tiendo_role="reader", tiendo_units=["001"]))
    r = await aggregator.get("/v1/units/01", headers=retired)
    assert r.status_code == 401, r.text
    assert "official code 001 names no unit in force" in r.json()["detail"]


async def test_a_scope_reads_names_as_every_unit_path_does(
    aggregator: httpx.AsyncClient, database: str
) -> None:
    """The identities' statement of "the version a name means" (the shared library may not
    import the board's) finds what `board.version_named` finds, for every code and key of
    the three trees at moments in each tree's period and after the cut-over."""
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch("SELECT code, admin_code FROM units")
        names = sorted({r["code"] for r in rows} | {r["admin_code"] for r in rows} | {"99999"})
        for at in (
            datetime(2024, 6, 1, tzinfo=TZ),
            datetime(2025, 1, 1, tzinfo=TZ),
            datetime(2025, 6, 30, 23, 59, tzinfo=TZ),
            datetime(2025, 7, 1, tzinfo=TZ),
            datetime.now(UTC),
        ):
            found = await identities.units_named(conn, names, at)
            assert [f.name for f in found] == names
            for f in found:
                named = await board.version_named(conn, f.name, at)
                assert f.key == (named.key if named else None), (f.name, at)
    finally:
        await conn.close()


NOW = datetime(2026, 1, 1, tzinfo=UTC)
CUT = datetime(2025, 7, 1, tzinfo=TZ)


def found(name: str, key: str | None, *, in_force: bool, **period: Any) -> NamedUnit:
    return NamedUnit(name, key, key and f"unit {key}", in_force, **period)


@pytest.mark.parametrize(
    ("named", "keys", "problem"),
    [
        # an official code in force: its version's key, whatever its own key is
        (found("00004", BA_DINH, in_force=True), [BA_DINH], None),
        # a code whose only version closed: refused, saying when
        (found("001", "001", in_force=False, valid_to=CUT), [], "closed on 2025-07-01"),
        # a code whose only version is not in force yet: refused too
        (
            found("0X", "0X", in_force=False, valid_from=NOW + timedelta(days=1)),
            [],
            "comes into force on 2026-01-02",
        ),
        # a later version's key names exactly that version, closed or not
        (found(VAN_MIEU, VAN_MIEU, in_force=False, valid_to=CUT), [VAN_MIEU], None),
        (found("99999", None, in_force=False), [], "unknown unit code(s): 99999"),
    ],
)
def test_a_scope_names_versions_in_force_by_code_and_any_version_by_key(
    named: NamedUnit, keys: list[str], problem: str | None
) -> None:
    scope = read_scope([named], NOW)
    assert scope.keys == keys
    if problem is None:
        assert scope.problems == ()
    else:
        assert len(scope.problems) == 1
        assert problem in scope.problems[0]
