"""OIDC bearer tokens from the organisation's identity provider (Keycloak, for one),
verified against its JWKS and mapped to a role and a unit scope by claims.

A token is accepted when its signature checks against a key of the provider's JWKS (RS256
or ES256, never `none` or a shared secret), its `iss` is the configured issuer, its `aud`
holds the configured audience, and it has not expired. The role is the claim `role_claim`
(`reader`, `admin` or `auditor`; anything else, or none, is refused), the scope the list in
`units_claim` (a reader without one is refused: an empty scope is never implied, `["*"]`
is every unit; official codes or version keys, which the guard reads as versions by the
rule of issued identities, `model.read_scope`). The identity's name is
`oidc:<preferred_username or sub>`, which the audit log records. Keys are fetched once,
then again at most every `KEY_REFRESH_SECONDS` and when a token names a key id not seen
yet (a rotation), at most every 10 s."""

import asyncio
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx
import jwt

from tiendo.identity.model import Identity, Role
from tiendo.logs import get_logger
from tiendo.unit_keys import KEY_PATTERN

log = get_logger(__name__)
ALGORITHMS = ["RS256", "ES256"]
KEY_REFRESH_SECONDS = 300.0
_UNKNOWN_KID_REFETCH_SECONDS = 10.0
ALL_UNITS = "*"
KEY = re.compile(KEY_PATTERN)


def looks_like_jwt(secret: str) -> bool:
    """A compact JWS (three base64url parts); tiendo's own secrets never hold a dot."""
    return secret.count(".") == 2


def identity_of(claims: Mapping[str, Any], role_claim: str, units_claim: str) -> Identity | None:
    """The identity a verified token's claims grant, None when they grant none."""
    value = claims.get(role_claim)
    if value not in {r.value for r in Role}:
        return None
    role = Role(value)
    if role is Role.ingest:
        return None  # upstream systems send with ingest tokens
    units = claims.get(units_claim, [])
    if not isinstance(units, list) or not all(isinstance(u, str) for u in units):
        return None
    if not all(u == ALL_UNITS or KEY.fullmatch(u) for u in units):
        return None  # read as version keys (the guard): an official code or a key, nothing else
    if role is Role.reader and not units:
        return None
    roots = frozenset() if ALL_UNITS in units else frozenset(units)
    if role is not Role.reader and roots:
        return None  # admins and auditors see every unit; a narrower claim is a mistake
    who = claims.get("preferred_username") or claims.get("sub")
    if not isinstance(who, str) or not who:
        return None
    return Identity(name=f"oidc:{who}", role=role, units=roots)


class OidcVerifier:
    def __init__(
        self, issuer: str, audience: str, jwks_url: str, role_claim: str, units_claim: str
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.role_claim = role_claim
        self.units_claim = units_claim
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def _fetch(self) -> None:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(self.jwks_url)
            response.raise_for_status()
        keys = jwt.PyJWKSet.from_dict(response.json()).keys
        self._keys = {k.key_id: k for k in keys if k.key_id}
        self._fetched_at = time.monotonic()

    async def _key(self, kid: str) -> jwt.PyJWK | None:
        async with self._lock:
            age = None if self._fetched_at is None else time.monotonic() - self._fetched_at
            stale = age is None or age > KEY_REFRESH_SECONDS
            rotated = kid not in self._keys and (age is None or age > _UNKNOWN_KID_REFETCH_SECONDS)
            if stale or rotated:
                try:
                    await self._fetch()
                except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
                    # the keys already held keep working while the provider is away
                    log.warning("jwks_fetch_failed", url=self.jwks_url, error=str(exc))
            return self._keys.get(kid)

    async def verify(self, token: str) -> Identity | None:
        """The identity of a valid token, None for any token that is not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") not in ALGORITHMS:
            return None
        key = await self._key(kid)
        if key is None:
            return None
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError:
            return None
        return identity_of(claims, self.role_claim, self.units_claim)
