"""OIDC bearer tokens (issue 16, optional part): verified against the issuer's JWKS, served
over real HTTP by a stand-in identity provider with keys this test generates (no Keycloak
here), and mapped to a role and a unit scope by claims. Forged, foreign, expired, misdirected
and unsigned tokens are refused; a key rotation at the provider is picked up."""

import base64
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI

from devtools.localstack import KafkaBroker, free_port
from services.aggregator.app import create_app as create_aggregator
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from tests.boards.live import serving
from tests.support.stack import Topics, aggregator_settings, eventually, running
from tests.support.world import build_world
from tiendo.identity.oidc import identity_of

START = datetime.now(UTC) - timedelta(days=5)
ISSUER = "https://sso.test.invalid/realms/police"


class Provider:
    """The identity provider's JWKS endpoint, and tokens signed with its keys."""

    def __init__(self) -> None:
        self.port = free_port()
        self.keys: dict[str, Any] = {"rsa-1": rsa.generate_private_key(65537, 2048)}
        self.app = FastAPI()

        @self.app.get("/certs")
        async def certs() -> dict[str, Any]:
            return {"keys": [self._public(kid, key) for kid, key in self.keys.items()]}

    @staticmethod
    def _public(kid: str, key: Any) -> dict[str, Any]:
        algorithm = (
            jwt.algorithms.RSAAlgorithm if kid.startswith("rsa") else jwt.algorithms.ECAlgorithm
        )
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
        return {**jwk, "kid": kid, "use": "sig"}

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/certs"

    def token(self, kid: str = "rsa-1", key: Any = None, **claims: Any) -> str:
        now = datetime.now(UTC)
        body = {"iss": ISSUER, "aud": "tiendo", "sub": "u-1", "preferred_username": "lan",
                "iat": now, "exp": now + timedelta(minutes=5), **claims}  # fmt: skip
        algorithm = "RS256" if kid.startswith("rsa") else "ES256"
        return jwt.encode(body, key or self.keys[kid], algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    p = Provider()
    async with serving(p.app, p.port):
        yield p


@pytest.fixture
async def aggregator(
    database: str, kafka: KafkaBroker, topics: Topics, provider: Provider
) -> AsyncIterator[httpx.AsyncClient]:
    await build_world(database, starts_at=START)
    settings = aggregator_settings(
        database, kafka.bootstrap, topics, consume=False,
        oidc_issuer=ISSUER, oidc_jwks_url=provider.jwks_url,
    )  # fmt: skip
    async with running(create_aggregator(settings)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_providers_token_reads_within_the_scope_its_claims_give(
    aggregator: httpx.AsyncClient, provider: Provider
) -> None:
    chief = bearer(provider.token(tiendo_role="reader", tiendo_units=["001"]))
    assert (await aggregator.get("/v1/units/00004", headers=chief)).status_code == 200
    assert (await aggregator.get("/v1/units/00010", headers=chief)).status_code == 404
    assert (await aggregator.put("/v1/units", json=[], headers=chief)).status_code == 403
    hq = bearer(provider.token(tiendo_role="reader", tiendo_units=["*"]))
    assert (await aggregator.get("/v1/units/00010", headers=hq)).status_code == 200
    admin = bearer(provider.token(tiendo_role="admin"))
    assert (await aggregator.put("/v1/units", json=[], headers=admin)).status_code == 200


def unsigned(claims: dict[str, Any]) -> str:
    """A token with `alg: none` and no signature, naming the provider's key."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'kid': 'rsa-1'})}.{part(claims)}."


async def test_forged_foreign_expired_misdirected_and_unsigned_tokens_are_refused(
    aggregator: httpx.AsyncClient, provider: Provider
) -> None:
    reader: dict[str, Any] = {"tiendo_role": "reader", "tiendo_units": ["*"]}
    stranger = rsa.generate_private_key(65537, 2048)
    good = provider.token(**reader)
    head, body, signature = good.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    in_five = int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())
    refused = {
        "signed by another key under the provider's kid": provider.token(key=stranger, **reader),
        "expired": provider.token(exp=datetime.now(UTC) - timedelta(hours=1), **reader),
        "for another audience": provider.token(aud="another-app", **reader),
        "from another issuer": provider.token(iss="https://evil.invalid", **reader),
        "unsigned (alg none)": unsigned({**reader, "iss": ISSUER, "aud": "tiendo", "exp": in_five}),
        "tampered": f"{head}.{flipped}.{signature}",
        "without a role": provider.token(tiendo_units=["*"]),
        "a reader without units": provider.token(tiendo_role="reader"),
        "an ingest role": provider.token(tiendo_role="ingest", tiendo_units=["*"]),
    }
    for why, token in refused.items():
        r = await aggregator.get("/v1/campaigns", headers=bearer(token))
        assert r.status_code == 401, why
    assert (await aggregator.get("/v1/campaigns", headers=bearer(good))).status_code == 200


async def test_a_key_rotated_at_the_provider_is_taken_up(
    aggregator: httpx.AsyncClient, provider: Provider
) -> None:
    reader: dict[str, Any] = {"tiendo_role": "reader", "tiendo_units": ["*"]}
    old = bearer(provider.token(**reader))
    assert (await aggregator.get("/v1/campaigns", headers=old)).status_code == 200
    provider.keys["ec-2"] = ec.generate_private_key(ec.SECP256R1())
    rotated = bearer(provider.token(kid="ec-2", **reader))

    async def taken_up() -> None:
        assert (await aggregator.get("/v1/campaigns", headers=rotated)).status_code == 200

    # an unknown key id makes the service fetch the JWKS again, at most every 10 s
    await eventually(taken_up, timeout=30, every=1.0)


async def test_at_ingest_a_providers_token_is_a_wrong_role(
    database: str, kafka: KafkaBroker, topics: Topics, provider: Provider
) -> None:
    await build_world(database, starts_at=START)
    settings = IngestSettings(
        database_url=database, kafka_bootstrap=kafka.bootstrap, **topics.kwargs(),
        oidc_issuer=ISSUER, oidc_jwks_url=provider.jwks_url,
    )  # fmt: skip
    async with running(create_ingest(settings)) as ingest:
        token = provider.token(tiendo_role="admin")
        r = await ingest.post("/v1/events", json={}, headers=bearer(token))
        assert r.status_code == 403, r.text


Granted = tuple[str, str, frozenset[str]] | None


def claims_cases() -> Iterator[tuple[dict[str, Any], Granted]]:
    yield (
        {"tiendo_role": "reader", "tiendo_units": ["001"], "sub": "s"},
        (
            "oidc:s",
            "reader",
            frozenset({"001"}),
        ),
    )
    yield (
        {"tiendo_role": "auditor", "preferred_username": "kim", "sub": "s"},
        (
            "oidc:kim",
            "auditor",
            frozenset(),
        ),
    )
    yield {"tiendo_role": "admin", "tiendo_units": ["001"], "sub": "s"}, None
    yield {"tiendo_role": "reader", "tiendo_units": "001", "sub": "s"}, None
    yield {"tiendo_role": "root", "sub": "s"}, None
    yield {"tiendo_role": "reader", "tiendo_units": ["*"]}, None


@pytest.mark.parametrize(("claims", "granted"), list(claims_cases()))
def test_claims_map_to_a_role_and_scope_or_to_nothing(
    claims: dict[str, Any], granted: Granted
) -> None:
    identity = identity_of(claims, "tiendo_role", "tiendo_units")
    got = None if identity is None else (identity.name, identity.role.value, identity.units)
    assert got == granted
