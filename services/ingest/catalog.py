"""What ingest checks events and tokens against, cached from PostgreSQL and refreshed.

A request never waits on a heavy query: units and indicators are re-read every
`catalog_refresh_seconds`, tokens every `token_refresh_seconds` (the bound on how long a
revoked token keeps working). A miss — a unit or token created seconds ago — is looked up
at a bounded rate however many requests miss, so garbage codes or tokens cannot load the
database. If the tokens cannot be re-read for `token_max_age_seconds` (PostgreSQL down),
ingest fails closed: a revoked token must not come back to life during an outage.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime

import asyncpg

from services.ingest import repository
from services.ingest.ratelimit import RateLimiter
from services.ingest.repository import TokenGrant
from services.ingest.validation import Catalog
from tiendo.logs import get_logger

log = get_logger(__name__)
_MISS_REFRESH_INTERVAL = 1.0
# A request that misses waits at most this long for the re-read (the database may be down).
_MISS_LOOKUP_TIMEOUT = 2.0
_REFRESH_TIMEOUT = 10.0
_LOOKUPS_PER_SECOND = 20
_MAX_REMEMBERED_MISSES = 10_000
DATABASE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class TokensUnavailable(Exception):
    """The token list is older than allowed and cannot be re-read now."""


class _Reloader:
    """One kind of cached data: a load, when it last succeeded, and coalesced re-reads."""

    def __init__(self, load: Callable[[], Awaitable[None]]) -> None:
        self._load = load
        self._lock = asyncio.Lock()
        self.loaded_at: float | None = None  # monotonic start of the last good load

    async def refresh(self) -> None:
        async with self._lock:
            await self._timed_load()

    async def _timed_load(self) -> None:
        started = time.monotonic()
        async with asyncio.timeout(_REFRESH_TIMEOUT):
            await self._load()
        self.loaded_at = started  # what it saw is at least as new as when it began

    async def refresh_after_miss(self, *, wait: bool = True) -> None:
        """Re-read for a request that named something unknown, at most once a second
        (unless `wait` is False); a caller within the second waits for the next load
        rather than being refused on stale data."""
        asked_at = time.monotonic()
        async with asyncio.timeout(_MISS_LOOKUP_TIMEOUT), self._lock:
            if self.loaded_at is not None and self.loaded_at > asked_at:
                return  # another request's load, begun after we asked, is fresh enough
            if self.loaded_at is not None and wait:
                delay = self.loaded_at + _MISS_REFRESH_INTERVAL - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self._timed_load()

    async def run(self, every: float, what: str) -> None:
        """Refresh forever; a failed refresh keeps the last good data."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except DATABASE_ERRORS as exc:
                log.warning("refresh_failed", what=what, error=str(exc) or type(exc).__name__)


class CatalogCache:
    def __init__(self, pool: asyncpg.Pool, *, token_max_age: float) -> None:
        self._pool = pool
        self._token_max_age = token_max_age
        self.catalog = Catalog(units={}, indicators=frozenset())
        self._tokens: dict[bytes, TokenGrant] = {}
        self._catalog = _Reloader(self._load_catalog)
        self._token_list = _Reloader(self._load_tokens)
        self._missed: dict[str, float] = {}
        self._lookups = RateLimiter(_LOOKUPS_PER_SECOND, _LOOKUPS_PER_SECOND)
        self._missed_tokens: dict[bytes, float] = {}
        self._token_lookups = RateLimiter(_LOOKUPS_PER_SECOND, _LOOKUPS_PER_SECOND)

    async def _load_catalog(self) -> None:
        # one snapshot: a tree version loaded meanwhile is seen whole or not at all
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            units = await repository.load_units(conn)
            versions = await repository.load_versions(conn)
            indicators = await repository.load_indicators(conn)
        self.catalog = Catalog(units=units, indicators=indicators, versions=versions)

    async def _load_tokens(self) -> None:
        async with self._pool.acquire() as conn:
            self._tokens = await repository.load_tokens(conn)

    @property
    def loaded(self) -> bool:
        return self._catalog.loaded_at is not None

    def tokens_fresh(self) -> bool:
        loaded_at = self._token_list.loaded_at
        return loaded_at is not None and time.monotonic() - loaded_at <= self._token_max_age

    async def refresh(self) -> None:
        """Load everything now (start-up)."""
        await self._catalog.refresh()
        await self._token_list.refresh()

    def _worth_a_lookup(self, code: str, now: float) -> bool:
        checked = self._missed.get(code)
        return checked is None or now - checked > _MISS_REFRESH_INTERVAL

    async def find_new_codes(self, units: Collection[str], indicators: Collection[str]) -> bool:
        """Whether units or indicators the cache lacks exist now (created since the last
        re-read); if so the catalogue is re-read before this returns.

        One indexed lookup per request, none for a code looked up within the last second,
        and at most `_LOOKUPS_PER_SECOND` overall: a client sending made-up codes costs
        the database little, and a unit created seconds ago is found on first use.
        """
        now = time.monotonic()
        units = [u for u in units if u not in self.catalog.units and self._worth_a_lookup(u, now)]
        indicators = [
            i
            for i in indicators
            if i not in self.catalog.indicators and self._worth_a_lookup(i, now)
        ]
        if not (units or indicators) or self._lookups.retry_after("", now):
            return False
        self._lookups.charge("", 1, now)
        if len(self._missed) > _MAX_REMEMBERED_MISSES:
            self._missed.clear()
        self._missed.update(dict.fromkeys([*units, *indicators], now))
        try:
            async with asyncio.timeout(_MISS_LOOKUP_TIMEOUT), self._pool.acquire() as conn:
                new_units = set(units) - set(await repository.unknown_units(conn, units))
                new_indicators = set(indicators) - set(
                    await repository.unknown_indicators(conn, indicators)
                )
            if not (new_units or new_indicators):
                return False
            await self._catalog.refresh_after_miss(wait=False)
        except DATABASE_ERRORS as exc:
            log.warning("catalog_lookup_failed", error=str(exc) or type(exc).__name__)
            return False
        return True

    async def grant(self, digest: bytes, now: datetime) -> TokenGrant | None:
        """The grant of the token with this SHA-256, None for an unknown, revoked or expired
        one; TokensUnavailable when the list is too old to trust and cannot be re-read."""
        if not self.tokens_fresh():
            try:
                await self._token_list.refresh_after_miss()
            except DATABASE_ERRORS as exc:
                raise TokensUnavailable(str(exc) or type(exc).__name__) from exc
            if not self.tokens_fresh():
                raise TokensUnavailable("token list too old")
        grant = self._tokens.get(digest) or await self._look_up_token(digest)
        if grant is not None and grant.valid_until is not None and grant.valid_until <= now:
            return None  # a rotated-out token whose grace period is over
        return grant

    async def _look_up_token(self, digest: bytes) -> TokenGrant | None:
        """A token issued since the last re-read, looked up by its hash — at a bounded
        rate, and not again within a second: made-up tokens cannot load the database."""
        now = time.monotonic()
        checked = self._missed_tokens.get(digest)
        if checked is not None and now - checked <= _MISS_REFRESH_INTERVAL:
            return None
        if self._token_lookups.retry_after("", now):
            return None
        self._token_lookups.charge("", 1, now)
        if len(self._missed_tokens) > _MAX_REMEMBERED_MISSES:
            self._missed_tokens.clear()
        self._missed_tokens[digest] = now
        try:
            async with asyncio.timeout(_MISS_LOOKUP_TIMEOUT), self._pool.acquire() as conn:
                grant = await repository.find_token(conn, digest)
        except DATABASE_ERRORS as exc:
            raise TokensUnavailable(str(exc) or type(exc).__name__) from exc
        if grant is not None:
            self._tokens[digest] = grant
            del self._missed_tokens[digest]
        return grant

    async def run(self, catalog_every: float, tokens_every: float) -> None:
        """Load once (retrying while the database is unreachable), then refresh forever."""
        while not (self.loaded and self._token_list.loaded_at is not None):
            try:
                await self.refresh()
            except DATABASE_ERRORS as exc:
                log.warning("catalog_load_failed", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(1.0)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._catalog.run(catalog_every, "catalog"))
            group.create_task(self._token_list.run(tokens_every, "tokens"))
