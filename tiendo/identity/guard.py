"""Each route names its owner: `guard.require(Role.reader, Role.admin)` is a dependency that
answers 401 without a valid credential, 403 for a role the route does not accept, and 503
while the identity list cannot be trusted; it returns the caller's `Identity`.

docs/access.md lists every route's roles and scope; tests/house/test_access.py walks each
service's OpenAPI and holds the routes to that table."""

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
from fastapi import HTTPException, Request

from tiendo.identity import tokens
from tiendo.identity.model import Identity, Role, permitted
from tiendo.identity.oidc import OidcVerifier, looks_like_jwt
from tiendo.identity.store import IdentitiesUnavailable, IdentityStore
from tiendo.settings import ServiceSettings

Dependency = Callable[[Request], Awaitable[Identity]]


class Guard:
    def __init__(self, settings: ServiceSettings, realm: str) -> None:
        self.store = IdentityStore(
            settings.identity_refresh_seconds, settings.identity_max_age_seconds
        )
        self.realm = realm
        self.oidc = (
            OidcVerifier(
                settings.oidc_issuer,
                settings.oidc_audience,
                settings.oidc_jwks_url,
                settings.oidc_role_claim,
                settings.oidc_units_claim,
            )
            if settings.oidc_issuer and settings.oidc_jwks_url
            else None
        )

    @staticmethod
    def _now() -> datetime:
        # wall time, never a service's simulated clock: grace periods are set in real time
        return datetime.now(UTC)

    async def start(self, pool: asyncpg.Pool) -> None:
        """Check credentials against `pool`'s identities, loaded now if the database answers
        (the service's lifespan calls it; a failure is retried by the first request)."""
        self.store.pool = pool
        await self.store.refresh_if_due()

    def unauthorized(self, detail: str) -> HTTPException:
        return HTTPException(
            401, detail, headers={"WWW-Authenticate": f'Bearer realm="{self.realm}"'}
        )

    async def identify(self, request: Request) -> Identity:
        secret = tokens.bearer(request.headers.get("authorization"), tokens.MAX_JWT_LENGTH)
        if secret is None:
            raise self.unauthorized("a bearer credential is required")
        if looks_like_jwt(secret):
            identity = await self.oidc.verify(secret) if self.oidc else None
            if identity is None:
                raise self.unauthorized("the token is not valid here")
            return await self._provider_scope(identity)
        if len(secret) > tokens.MAX_TOKEN_LENGTH:
            raise self.unauthorized("unknown, revoked or rotated-out credential")
        try:
            identity = await self.store.identify(tokens.digest(secret), self._now())
        except IdentitiesUnavailable as exc:
            raise self.unavailable() from exc
        if identity is None:
            raise self.unauthorized("unknown, revoked or rotated-out credential")
        return identity

    def unavailable(self) -> HTTPException:
        return HTTPException(
            503,
            "credentials cannot be checked now; try again",
            headers={"Retry-After": str(max(1, round(self.store.refresh_seconds)))},
        )

    async def _provider_scope(self, identity: Identity) -> Identity:
        """An identity provider's reader with its claim's unit names read as version keys,
        by the rule an issued identity's are (`model.read_scope`): scopes are matched by
        key, so `00004` must become the version the code names now, and a code naming none
        in force is refused rather than bound to a retired unit."""
        if identity.everywhere:
            return identity
        try:
            scope = await self.store.read_scope(identity.units, self._now())
        except IdentitiesUnavailable as exc:
            raise self.unavailable() from exc
        if scope.problems:
            raise self.unauthorized(f"the token's units: {'; '.join(scope.problems)}")
        return dataclasses.replace(identity, units=frozenset(scope.keys))

    def require(self, *roles: Role) -> Dependency:
        """A dependency admitting only identities of `roles`."""
        accepted = frozenset(roles)
        names = " or ".join(sorted(r.value for r in accepted))

        async def owner(request: Request) -> Identity:
            identity = await self.identify(request)
            if not permitted(identity, accepted):
                raise HTTPException(403, f"this route is for the {names} role")
            return identity

        owner.__name__ = f"require_{'_'.join(sorted(r.value for r in accepted))}"
        return owner

    def refuse_other_roles(self) -> Callable[[Request], Awaitable[None]]:
        """For a route that checks its own credentials (ingest's tokens, on its hot path):
        a known identity of another role gets 403, as on every other route, rather than
        the 401 of an unknown secret. No wait on the database for a secret already seen;
        an unseen one is looked up at the store's bounded rate."""

        async def not_another_role(request: Request) -> None:
            secret = tokens.bearer(request.headers.get("authorization"), tokens.MAX_JWT_LENGTH)
            if secret is None:
                return
            if looks_like_jwt(secret):
                # an identity provider's token is a person's: never an upstream's
                if self.oidc and await self.oidc.verify(secret):
                    raise HTTPException(403, "this route is for the ingest role")
                return
            self.store.refresh_soon()
            digest = tokens.digest(secret)
            identity = self.store.cached(digest, self._now())
            if identity is None and not self.store.knows(digest):
                # the route's own check answers when the identities cannot be read
                with contextlib.suppress(IdentitiesUnavailable):
                    identity = await self.store.look_up(digest, self._now())
            if identity is not None and identity.role is not Role.ingest:
                raise HTTPException(403, f"this route is not for the {identity.role} role")

        return not_another_role
