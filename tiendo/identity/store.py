"""The identities a service checks requests against: cached from PostgreSQL, re-read on a
short period, so a new, rotated or revoked identity takes effect without a restart.

The re-read is driven by requests (the first one after `refresh_seconds` does it), not by a
background loop: a service nobody calls has nothing to check, and one that is called never
checks against a list older than the period plus one query.

A secret the cache lacks (issued since the last re-read) is looked up by its hash at a
bounded rate, and not again within a second: made-up secrets cannot load the database. If
the list cannot be re-read for `max_age` seconds (PostgreSQL down), the store fails closed:
a revoked identity must not come back to life during an outage.
"""

import asyncio
import time
from datetime import datetime

import asyncpg

from tiendo.identity import repository
from tiendo.identity.model import Identity, ReadScope, read_scope
from tiendo.logs import get_logger

log = get_logger(__name__)
# what an unreachable, restarting or overloaded PostgreSQL raises (a connection an outage
# broke mid-query included)
DATABASE_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
_LOOKUP_TIMEOUT = 2.0
_LOOKUPS_PER_SECOND = 20
_MISS_MEMORY_SECONDS = 1.0
_MAX_REMEMBERED_MISSES = 10_000
_RETRY_SECONDS = 1.0
_MAX_REMEMBERED_SCOPES = 10_000


class IdentitiesUnavailable(Exception):
    """The identity list is older than allowed and cannot be re-read now."""


class IdentityStore:
    def __init__(self, refresh_seconds: float, max_age_seconds: float) -> None:
        self.refresh_seconds = refresh_seconds
        self.max_age_seconds = max_age_seconds
        self.pool: asyncpg.Pool | None = None  # set by the service's lifespan
        self._by_digest: dict[bytes, Identity] = {}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()
        self._missed: dict[bytes, float] = {}
        self._lookups: list[float] = []
        self._attempted_at: float | None = None
        self._background: asyncio.Task[None] | None = None
        self._scopes: dict[frozenset[str], tuple[float, ReadScope]] = {}

    def fresh(self) -> bool:
        return (
            self._loaded_at is not None
            and time.monotonic() - self._loaded_at <= self.max_age_seconds
        )

    async def refresh(self) -> None:
        """Re-read every active identity now."""
        if self.pool is None:
            raise IdentitiesUnavailable("the service has no database yet")
        started = time.monotonic()
        async with asyncio.timeout(_LOOKUP_TIMEOUT), self.pool.acquire() as conn:
            self._by_digest = await repository.load_active(conn)
        self._loaded_at = started

    async def refresh_if_due(self) -> None:
        """Re-read when the list is older than `refresh_seconds` (one request does it, the
        others wait for it); a failure keeps the last list and is retried a second later."""
        if not self._due():
            return
        async with self._lock:
            if not self._due():
                return  # another request re-read it meanwhile
            self._attempted_at = time.monotonic()
            try:
                await self.refresh()
            except DATABASE_ERRORS as exc:
                log.warning("identities_refresh_failed", error=str(exc) or type(exc).__name__)

    def refresh_soon(self) -> None:
        """Start a due re-read without waiting for it (for a hot path that must not wait on
        the database)."""
        if self._due() and (self._background is None or self._background.done()):
            self._background = asyncio.create_task(self.refresh_if_due())

    def _due(self) -> bool:
        now = time.monotonic()
        if self._attempted_at is not None and now - self._attempted_at < _RETRY_SECONDS:
            return False
        return self._loaded_at is None or now - self._loaded_at > self.refresh_seconds

    def cached(self, digest: bytes, now: datetime) -> Identity | None:
        """The identity of this hash as last read, without touching the database."""
        identity = self._by_digest.get(digest)
        until = identity.valid_until if identity is not None else None
        if until is not None and until <= now:
            return None  # a rotated-out secret whose grace period is over
        return identity

    async def identify(self, digest: bytes, now: datetime) -> Identity | None:
        """The identity of the secret with this SHA-256, None for an unknown, revoked or
        rotated-out one; IdentitiesUnavailable when the list is too old to trust."""
        await self.refresh_if_due()
        if not self.fresh():
            raise IdentitiesUnavailable("the identity list is too old and cannot be re-read")
        if digest in self._by_digest:
            return self.cached(digest, now)
        return await self.look_up(digest, now)

    def _may_look_up(self, digest: bytes, now: float) -> bool:
        seen = self._missed.get(digest)
        if seen is not None and now - seen <= _MISS_MEMORY_SECONDS:
            return False
        self._lookups = [t for t in self._lookups if now - t < 1.0]
        if len(self._lookups) >= _LOOKUPS_PER_SECOND:
            return False
        self._lookups.append(now)
        if len(self._missed) > _MAX_REMEMBERED_MISSES:
            self._missed.clear()
        self._missed[digest] = now
        return True

    def knows(self, digest: bytes) -> bool:
        """Whether the last read (or a look-up since) had this hash."""
        return digest in self._by_digest

    async def look_up(self, digest: bytes, now: datetime) -> Identity | None:
        """An identity issued since the last re-read, found on its first use."""
        if self.pool is None or not self._may_look_up(digest, time.monotonic()):
            return None
        try:
            async with asyncio.timeout(_LOOKUP_TIMEOUT), self.pool.acquire() as conn:
                identity = await repository.find(conn, digest)
        except DATABASE_ERRORS as exc:
            raise IdentitiesUnavailable(str(exc) or type(exc).__name__) from exc
        if identity is None:
            return None
        self._by_digest[digest] = identity
        self._missed.pop(digest, None)
        return self.cached(digest, now)

    async def read_scope(self, names: frozenset[str], now: datetime) -> ReadScope:
        """The version keys unit names from an identity provider's claim mean at `now`
        (`model.read_scope`, the rule of issued identities), each set read again after
        `refresh_seconds` as the identities are. While PostgreSQL is away a set read within
        `max_age_seconds` still answers; after that IdentitiesUnavailable."""
        read = self._scopes.get(names)
        age = None if read is None else time.monotonic() - read[0]
        if read is not None and age is not None and age <= self.refresh_seconds:
            return read[1]
        started = time.monotonic()
        try:
            if self.pool is None:
                raise IdentitiesUnavailable("the service has no database yet")
            async with asyncio.timeout(_LOOKUP_TIMEOUT), self.pool.acquire() as conn:
                found = await repository.units_named(conn, sorted(names), now)
        except (*DATABASE_ERRORS, IdentitiesUnavailable) as exc:
            if read is not None and age is not None and age <= self.max_age_seconds:
                return read[1]
            raise IdentitiesUnavailable(str(exc) or type(exc).__name__) from exc
        scope = read_scope(found, now)
        if scope.problems:
            # once per set and period, not per request
            log.warning("identity_provider_units_refused", problems=list(scope.problems))
        if len(self._scopes) > _MAX_REMEMBERED_SCOPES:
            self._scopes.clear()
        self._scopes[names] = (started, scope)
        return scope
