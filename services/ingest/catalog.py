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


class CatalogCache:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.catalog = Catalog(units={}, indicators=frozenset())
        self._tokens: dict[bytes, TokenGrant] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        self.loaded = False

    async def refresh(self) -> None:
        async with self._lock:
            async with self._pool.acquire() as conn:
                units = await repository.load_units(conn)
                indicators = await repository.load_indicators(conn)
                tokens = await repository.load_tokens(conn)
            self.catalog = Catalog(units=units, indicators=indicators)
            self._tokens = tokens
            self._loaded_at = time.monotonic()
            self.loaded = True

    async def refresh_if_stale(self) -> None:
        if time.monotonic() - self._loaded_at >= _MISS_REFRESH_INTERVAL:
            await self.refresh()

    async def grant(self, digest: bytes) -> TokenGrant | None:
        grant = self._tokens.get(digest)
        if grant is None and time.monotonic() - self._loaded_at >= _MISS_REFRESH_INTERVAL:
            async with self._pool.acquire() as conn:
                grant = await repository.find_token(conn, digest)
        return grant

    async def run(self, every: float) -> None:
        """Refresh forever; a failed refresh keeps the last good catalogue."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("catalog_refresh_failed", error=str(exc))
