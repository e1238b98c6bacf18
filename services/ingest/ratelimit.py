"""Per-token rate limit: a token bucket counted in events.

A request is let in while the token's bucket holds at least one event, and is charged for
every event it carried, so the bucket may go into debt: a 1,000-event batch is never
refused for being larger than what is left, and the debt makes the next requests wait
(429 with `Retry-After`) until the rate has paid it back.

The bucket of a token is shared by every ingest process (TIENDO_INGEST_WORKERS, replicas):
one row of `ingest.rate_buckets` in PostgreSQL, taken from by one `INSERT … ON CONFLICT DO
UPDATE … RETURNING` per request (`SharedRateLimit.take`). Why that, and not the
alternatives:

- A per-process bucket at rate/N would be exact only while the load balancer spreads a
  token's requests evenly, which SO_REUSEPORT's hash of the client's address does not.
- A fixed per-second window row is one statement too, but lets a token send twice its
  rate across a window's edge, and drops the burst and debt semantics clients know.
- The bucket in one statement costs one round trip and holds the row lock only for the
  statement itself (autocommit, no transaction around it). The table is UNLOGGED: the
  statement then waits for no WAL flush, and a PostgreSQL crash merely refills the
  buckets. Time is PostgreSQL's `now()`, one clock for every process.

Two things keep the request path short. A process remembers, from each answer, until when
a token's bucket must still be below one event (others only ever take from it, so the
refill since the answer is an upper bound): refusals in that time are answered without a
round trip and without reading the body, and they are exactly the ones PostgreSQL would
make. And when PostgreSQL does not answer within a second, the process falls back for a
few seconds to a bucket of its own holding its share (1/N) of the rate and burst: ingest
keeps taking events through a database outage, as it does with its cached tokens, and the
token stays within its rate plus at most one burst.

`RateLimiter` is the pure in-process bucket (time is an argument): that fallback, and the
catalogue's limit on look-ups of unknown codes.
"""

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from tiendo.identity.store import DATABASE_ERRORS
from tiendo.logs import get_logger

log = get_logger(__name__)


@dataclass(slots=True)
class _Bucket:
    level: float
    updated: float


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        """`rate` events per second (0: unlimited), at most `burst` saved up."""
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        elif now > bucket.updated:
            bucket.level = min(self.burst, bucket.level + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def retry_after(self, key: str, now: float) -> int:
        """0 when `key` may send now, else whole seconds until it may (at least 1)."""
        if self.rate <= 0:
            return 0
        bucket = self._bucket(key, now)
        if bucket.level >= 1:
            return 0
        return max(1, math.ceil((1 - bucket.level) / self.rate))

    def charge(self, key: str, events: int, now: float) -> None:
        """Take `events` from `key`'s bucket (it may go below zero)."""
        if self.rate <= 0:
            return
        self._bucket(key, now).level -= events


# The bucket rule of `RateLimiter`, in one statement: refill for the time since the last
# request (up to the burst), then, if at least one event is there, charge them all.
# ON CONFLICT's SET sees only the old row, so the refill is written out where it is used;
# RETURNING sees only the new row, so the decision is stored with it (`admitted`).
# $1 token name, $2 events, $3 burst, $4 rate (events/s).
_REFILLED = (
    "least($3::float8, b.level + $4::float8"
    " * greatest(0, extract(epoch FROM now() - b.updated_at)::float8))"
)
TAKE = f"""
INSERT INTO ingest.rate_buckets AS b (token, level, updated_at, admitted)
VALUES ($1, $3::float8 - $2, now(), true)
ON CONFLICT (token) DO UPDATE SET
    admitted = {_REFILLED} >= 1,
    level = {_REFILLED} - CASE WHEN {_REFILLED} >= 1 THEN $2 ELSE 0 END,
    -- a statement that waited for the row lock may have started before the last update
    updated_at = greatest(b.updated_at, now())
RETURNING admitted, level
"""

# Longest wait for PostgreSQL's answer (pool included) before this process decides alone.
_SHARED_TIMEOUT = 1.0
# How long it then decides alone before asking PostgreSQL again: an unreachable server
# must not cost every request the timeout.
_ALONE_SECONDS = 5.0


def _wait(level: float, rate: float) -> float:
    """Seconds until a bucket at `level` holds one event again."""
    return (1 - level) / rate


class SharedRateLimit:
    """The per-token bucket shared by every ingest process, through PostgreSQL."""

    def __init__(
        self, rate: float, burst: int, share: int, on_alone: Callable[[], None] = lambda: None
    ) -> None:
        """`rate` events per second (0: unlimited), at most `burst` saved up; `share`
        processes take from it (each falls back to 1/share of both on its own)."""
        self.rate = rate
        self.burst = burst
        self._empty_until: dict[str, float] = {}
        self._alone = RateLimiter(rate / share, max(1, burst // share))
        self._alone_until = 0.0
        self._on_alone = on_alone

    def known_wait(self, key: str, now: float) -> int:
        """Whole seconds `key` is known to have to wait, from PostgreSQL's last answer to
        this process (0: not known, ask with `take`). No I/O."""
        wait = self._empty_until.get(key, 0.0) - now
        return max(1, math.ceil(wait)) if wait > 0 else 0

    async def take(self, pool: asyncpg.Pool, key: str, events: int) -> int:
        """Charge `events` to `key` if its bucket holds at least one: 0 when it did, else
        the whole seconds to wait (at least 1), nothing charged."""
        if self.rate <= 0:
            return 0
        sent = time.monotonic()
        if sent >= self._alone_until:
            try:
                async with asyncio.timeout(_SHARED_TIMEOUT), pool.acquire() as conn:
                    row = await conn.fetchrow(TAKE, key, events, self.burst, self.rate)
            except DATABASE_ERRORS as exc:
                self._alone_until = time.monotonic() + _ALONE_SECONDS
                self._on_alone()
                log.warning(
                    "rate_limit_alone",
                    error=str(exc) or type(exc).__name__,
                    seconds=_ALONE_SECONDS,
                )
            else:
                assert row is not None  # an upsert always returns its row
                admitted, level = bool(row["admitted"]), float(row["level"])
                if level < 1:
                    # measured from before the request: the bucket was at `level` later
                    # than `sent`, so it is still below one event until then at least
                    self._empty_until[key] = sent + _wait(level, self.rate)
                else:
                    self._empty_until.pop(key, None)
                return 0 if admitted else max(1, math.ceil(_wait(level, self.rate)))
        now = time.monotonic()
        wait = self._alone.retry_after(key, now)
        if not wait:
            self._alone.charge(key, events, now)
        return wait
