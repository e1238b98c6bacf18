"""What ingest checks events and tokens against, cached from PostgreSQL and refreshed.

A request never waits on a heavy query: the catalogue is re-read in the background, and a
miss (a unit or token created seconds ago) triggers at most one refresh per second.
"""

import asyncio
import time

import asyncpg

from services.ingest import repository
from services.ingest.repository import TokenGrant
from services.ingest.validation import Catalog
from tiendo.logs import get_logger

log = get_logger(__name__)
_MISS_REFRESH_INTERVAL = 1.0
_MAX_REMEMBERED_MISSES = 10_000


class CatalogCache:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.catalog = Catalog(units={}, indicators=frozenset())
        self._tokens: dict[bytes, TokenGrant] = {}
        self._loaded_at = 0.0
        self._misses: dict[bytes, float] = {}
        self._lock = asyncio.Lock()
        self.loaded = False

    async def refresh(self) -> None:
        async with self._lock:
            await self._load()

    async def _load(self) -> None:
        started = time.monotonic()
        async with self._pool.acquire() as conn:
            units = await repository.load_units(conn)
            indicators = await repository.load_indicators(conn)
            tokens = await repository.load_tokens(conn)
        self.catalog = Catalog(units=units, indicators=indicators)
        self._tokens = tokens
        self._loaded_at = started  # what it saw is at least as new as when it began
        self.loaded = True

    async def refresh_after_miss(self) -> None:
        """Re-read the catalogue for a request that named something unknown.

        At most one load a second whatever the number of such requests: a caller within
        the second waits for the next load rather than being refused on stale data.
        """
        asked_at = time.monotonic()
        async with self._lock:
            if self._loaded_at > asked_at:
                return  # another request's load, begun after we asked, is fresh enough
            wait = self._loaded_at + _MISS_REFRESH_INTERVAL - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._load()

    async def grant(self, digest: bytes) -> TokenGrant | None:
        """The token's grant; a token issued since the last refresh is looked up directly,
        and an unknown one at most once a second (bad tokens cannot load the database)."""
        grant = self._tokens.get(digest)
        if grant is not None:
            return grant
        now = time.monotonic()
        if now - self._misses.get(digest, -_MISS_REFRESH_INTERVAL) < _MISS_REFRESH_INTERVAL:
            return None
        if len(self._misses) > _MAX_REMEMBERED_MISSES:
            self._misses.clear()
        self._misses[digest] = now
        async with self._pool.acquire() as conn:
            grant = await repository.find_token(conn, digest)
        if grant is not None:
            self._tokens[digest] = grant
        return grant

    async def run(self, every: float) -> None:
        """Refresh forever; a failed refresh keeps the last good catalogue."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("catalog_refresh_failed", error=str(exc))
